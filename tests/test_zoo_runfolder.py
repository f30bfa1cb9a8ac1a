"""The zoo's run-folder module: one layout, one JSONL writer, the record and the training log read through the
scanner's own readers (a hand-written TRL trainer_state.json, values checked by hand); and the measured rates that
`dpo-doctor explain` prints from rules/calibration.json."""

import json

import pytest

from dpo_doctor.errors import UserError
from dpo_doctor.zoo import runfolder


def test_fresh_run_keeps_a_finished_run_and_empties_an_unfinished_one(tmp_path):
    run = runfolder.fresh_run(tmp_path, "a", force=False)
    (run / "stale.txt").write_text("x")
    assert runfolder.fresh_run(tmp_path, "a", force=False) == run and not (run / "stale.txt").exists()
    runfolder.write_record(run, {"name": "a", "kind": "healthy", "eval_data": "eval.jsonl", "scan_ref": "ref"})
    assert runfolder.fresh_run(tmp_path, "a", force=False) is None  # finished: kept
    assert runfolder.runs_in(tmp_path) == [run]
    assert runfolder.read_record(run)["kind"] == "healthy"
    assert runfolder.fresh_run(tmp_path, "a", force=True) == run and not (run / "scenario.json").exists()


def test_write_jsonl_round_trips(tmp_path):
    rows = [{"prompt": "What is 1 plus 2?", "chosen": " 3.", "rejected": " \"13\"."}, {"prompt": "é", "n": 1}]
    path = runfolder.write_jsonl(tmp_path / "x.jsonl", rows)
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows


def test_read_record_says_what_is_wrong(tmp_path):
    with pytest.raises(UserError, match="scenario.json: missing; this folder is not a built zoo run"):
        runfolder.read_record(tmp_path)
    (tmp_path / "scenario.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        runfolder.read_record(tmp_path)
    (tmp_path / "scenario.json").write_text(json.dumps({"name": "a", "kind": "healthy"}))
    with pytest.raises(UserError, match="missing eval_data, scan_ref"):
        runfolder.read_record(tmp_path)


def test_log_endpoints_reads_trl_trainer_state_like_the_scanner(tmp_path):
    history = [
        {"step": 4, "epoch": 0.5, "loss": 0.69, "rewards/accuracies": 0.5},
        {"step": 8, "epoch": 1.0, "loss": 0.40, "rewards/accuracies": 0.875},
        {"step": 8, "epoch": 1.0, "eval_loss": 0.52, "eval_rewards/accuracies": 0.7},
        {"step": 12, "epoch": 1.5, "loss": 0.31, "rewards/accuracies": 1.0},
        {"step": 16, "epoch": 2.0, "eval_loss": 0.47, "eval_rewards/accuracies": 0.75},
        {"step": 16, "epoch": 2.0, "train_runtime": 9.0, "train_loss": 0.45},
    ]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 16, "log_history": history}))
    got = runfolder.log_endpoints(tmp_path)
    assert got["train_acc"] == 1.0 and got["train_loss"] == pytest.approx(0.31)
    assert got["eval_loss_first"] == pytest.approx(0.52) and got["eval_loss_last"] == pytest.approx(0.47)
    assert got["eval_loss_min"] == pytest.approx(0.47) and got["eval_acc_last"] == pytest.approx(0.75)
    assert runfolder.log_endpoints(tmp_path / "missing") == {}


def test_explain_states_the_measured_rates(monkeypatch):
    from dpo_doctor.rules import calibration

    fake = {"runs": 42, "rules": {"DPO101": {"plain": {"held_out": {
        "detected": 3, "positives": 4, "false_alarms": 1, "healthy": 10, "other_alarms": 2, "others": 38}}}}}
    monkeypatch.setattr(calibration, "load", lambda: fake)
    text = calibration.describe("dpo101")
    assert "42 TRL DPO runs" in text
    assert "detected 3/4 (75%)" in text and "1/10 (10%) of the healthy runs" in text and "2/38 (5%)" in text
    assert "with a verifiable probe suite" not in text  # no suite numbers for this rule: no line
    assert calibration.describe("DPO999") is None


def test_explain_prints_the_packaged_rates_through_the_console_script():
    """`dpo-doctor explain CODE` states the held-out rates that benchmarks/corpus/evaluate.py wrote into the
    package (dpo_doctor/rules/calibration.json), for every rule that file has numbers for."""
    from dpo_doctor.rules import calibration
    from tests.hostile.conftest import run_cli

    data = calibration.load()
    assert data.get("rules"), "dpo_doctor/rules/calibration.json is missing: run benchmarks/corpus/evaluate.py"
    code, row = next((c, r) for c, r in sorted(data["rules"].items()) if r.get("plain"))
    h = row["plain"]["held_out"]
    proc = run_cli("explain", code)
    assert proc.returncode == 0, proc.stderr
    assert "Measured on the calibration corpus" in proc.stdout
    assert f"detected {h['detected']}/{h['positives']}" in proc.stdout
