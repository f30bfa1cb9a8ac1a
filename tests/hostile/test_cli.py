"""The README's promises and the CLI's own failure classes, end to end through the installed console script.

Exit codes (`--fail-on`, usage errors, Ctrl-C), flag checks that must fire before any model loads, output
locations, and views over a damaged report.json. Log-only scans keep most cases fast (no model is loaded).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import make_pairs
from tests.hostile.conftest import CLI, assert_user_error, run_cli

FIXTURE_REPORT = Path(__file__).resolve().parents[1] / "fixtures" / "tui_report"


def _log_run(root: Path, entries: list[dict]) -> Path:
    root.mkdir(parents=True)
    (root / "trainer_state.json").write_text(json.dumps({"global_step": entries[-1]["step"], "log_history": entries}))
    return root


@pytest.fixture()
def warning_run(tmp_path) -> Path:
    """Chosen rewards fall far (DPO203, a warning) while the loss moves: worst severity = warning."""
    chosen, rejected = [0.0, -0.1, -0.2, -7.0, -7.3, -7.3], [0.0, -0.2, -0.4, -11.4, -11.5, -11.4]
    loss = [0.69, 0.6, 0.5, 0.4, 0.35, 0.3]
    return _log_run(tmp_path / "warn", [{"step": 10 * (i + 1), "loss": l, "rewards/chosen": c, "rewards/rejected": r,
                                         "rewards/margins": c - r} for i, (l, c, r) in enumerate(zip(loss, chosen, rejected))])


@pytest.fixture()
def error_run(tmp_path) -> Path:
    """The loss sits at ln 2 for every step (DPO201, an error)."""
    return _log_run(tmp_path / "err", [{"step": 10 * (i + 1), "loss": 0.6931} for i in range(8)])


@pytest.fixture()
def healthy_run(tmp_path) -> Path:
    return _log_run(tmp_path / "ok", [{"step": 10 * (i + 1), "loss": 0.69 - 0.02 * i, "rewards/chosen": 0.01 * i,
                                       "rewards/rejected": -0.02 * i, "rewards/margins": 0.03 * i} for i in range(8)])


# ---- --fail-on: the exit code a pipeline gates on ------------------------------------------------------------


@pytest.mark.parametrize("run, fail_on, code", [
    ("warning_run", "warning", 1), ("warning_run", "error", 0), ("error_run", "error", 1),
    ("error_run", "warning", 1), ("error_run", None, 0), ("healthy_run", "warning", 0),
])
def test_fail_on_exit_code(request, tmp_path, run, fail_on, code):
    args = ["scan", request.getfixturevalue(run), "--out", tmp_path / "rep"] + (["--fail-on", fail_on] if fail_on else [])
    proc = run_cli(*args)
    assert proc.returncode == code, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert (tmp_path / "rep" / "report.html").is_file()  # the views were rendered before exiting 1
    if code == 1:
        assert any(d["severity"] in ("warning", "error") for d in report["diagnoses"])


def test_fail_on_rejects_unknown_severity(tmp_path, warning_run):
    assert_user_error(run_cli("scan", warning_run, "--fail-on", "critical"), "--fail-on", "warning or error")


# ---- usage errors: one paragraph, exit 2 ------------------------------------------------------------------


@pytest.mark.parametrize("args, needles", [
    (["scan", ".", "--bogus"], ["no such option", "--bogus"]),
    (["scan", ".", "--max-pairs"], ["--max-pairs", "requires an argument"]),
    (["scan", ".", "--max-pairs", "abc"], ["--max-pairs"]),
    (["scna"], ["no such command", "scan"]),
    (["report", ".", "--format"], ["--format"]),
    (["watch", ".", "--poll", "x"], ["--poll"]),
])
def test_usage_errors_are_one_paragraph(args, needles):
    assert_user_error(run_cli(*args), *needles)


# ---- flags checked before any model loads ---------------------------------------------------------------


@pytest.mark.parametrize("extra, needles", [
    (["--max-pairs", "0"], ["--max-pairs", "positive"]),
    (["--max-pairs", "-3"], ["--max-pairs", "positive"]),
    (["--max-length", "0"], ["--max-length"]),
    (["--max-new-tokens", "0"], ["--max-new-tokens"]),
    (["--samples-per-prompt", "0"], ["--samples-per-prompt"]),
    (["--batch-size", "0"], ["--batch-size"]),
    (["--device", "tpu"], ["--device", "tpu"]),
    (["--dtype", "int8"], ["--dtype", "int8"]),
    (["--beta", "-1"], ["--beta"]),
    (["--select", "DPO1O1"], ["DPO1O1", "did you mean DPO101"]),
    (["--ignore", "XYZ"], ["--ignore", "XYZ"]),
    (["--set", "DPO101.max_length_ration=2"], ["max_length_ration", "did you mean max_length_ratio"]),
    (["--set", "DPO101"], ["CODE.PARAM=VALUE"]),
    (["--set", "DPO101.max_length_ratio=big"], ["not a number"]),
    (["--probe-suite", "shrot_answer"], ["shrot_answer"]),
    (["--prompts", "nowhere.jsonl"], ["--prompts", "nowhere.jsonl"]),
    (["--device-map", "balanced"], ["--device-map"]),
])
def test_flag_errors_fail_before_any_model_loads(tmp_path, tiny_dir, extra, needles):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(4)))
    cache = tmp_path / "cache"
    t0 = time.time()
    proc = run_cli("scan", tiny_dir, "--ref", tiny_dir, "--data", data, "--cache-dir", cache,
                   "--out", tmp_path / "rep", *extra)
    assert_user_error(proc, *needles)
    assert not cache.exists(), "a flag error was found only after scoring started"
    assert time.time() - t0 < 60


def test_missing_run_dir_and_data(tmp_path, tiny_dir):
    assert_user_error(run_cli("scan", tmp_path / "nope"), "nope", "does not exist")
    assert_user_error(run_cli("scan", tiny_dir, "--data", tmp_path / "missing.jsonl"), "--data", "missing.jsonl")


# ---- output locations -----------------------------------------------------------------------------------


def test_out_that_is_a_file(tmp_path, healthy_run):
    target = tmp_path / "taken"
    target.write_text("x")
    assert_user_error(run_cli("scan", healthy_run, "--out", target), "is a file", "--out")
    assert target.read_text() == "x"


def test_out_under_a_file(tmp_path, healthy_run):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert_user_error(run_cli("scan", healthy_run, "--out", blocker / "sub" / "rep"), "blocker", "is a file")


def test_report_out_that_is_a_folder(tmp_path):
    rep = tmp_path / "rep"
    shutil.copytree(FIXTURE_REPORT, rep)
    assert_user_error(run_cli("report", rep, "--format", "md", "--out", tmp_path), "is a folder")


def test_no_partial_files_left_after_a_scan(tmp_path, healthy_run):
    proc = run_cli("scan", healthy_run, "--out", tmp_path / "rep")
    assert proc.returncode == 0, proc.stderr
    assert not [p.name for p in (tmp_path / "rep").iterdir() if ".tmp" in p.name]


# ---- views over a damaged report.json: the one loader names the field -----------------------------------


def _damaged(tmp_path: Path, edit) -> Path:
    rep = tmp_path / "rep"
    shutil.copytree(FIXTURE_REPORT, rep)
    doc = json.loads((rep / "report.json").read_text())
    edit(doc)
    (rep / "report.json").write_text(json.dumps(doc))
    return rep


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["checkpoints"][1]["metrics"].__setitem__("rewards/margins", "high"), 'checkpoints[1].metrics["rewards/margins"]'),
    (lambda d: d["checkpoints"][0].__setitem__("step", "10"), "checkpoints[0].step"),
    (lambda d: d["run"].__setitem__("beta", None), "run.beta"),
    (lambda d: d.__setitem__("diagnoses", {"a": 1}), "diagnoses"),
    (lambda d: d["diagnoses"][0].__setitem__("severity", "fatal"), "diagnoses[0].severity"),
    (lambda d: d.__setitem__("warnings", [1, 2]), "warnings[0]"),
    (lambda d: d["checkpoints"].__setitem__(0, "checkpoint-1"), "checkpoints[0]"),
])
@pytest.mark.parametrize("command", ["report", "tui"])
def test_views_name_the_wrong_field(tmp_path, edit, field, command):
    rep = _damaged(tmp_path, edit)
    assert_user_error(run_cli(command, rep), field, "report.json")


def test_report_json_may_not_point_outside_its_folder(tmp_path):
    secret = tmp_path / "secret.parquet"
    import polars as pl

    pl.DataFrame({"pair_id": [0], "prompt": ["s3cret"], "chosen": ["a"], "rejected": ["b"]}).write_parquet(secret)
    rep = _damaged(tmp_path, lambda d: d["files"].__setitem__("pair_texts", "../secret.parquet"))
    proc = run_cli("report", rep, "--format", "html", "--out", "-")
    assert_user_error(proc, "outside the report folder")
    assert "s3cret" not in proc.stdout


def test_report_renders_the_fixture(tmp_path):
    rep = tmp_path / "rep"
    shutil.copytree(FIXTURE_REPORT, rep)
    proc = run_cli("report", rep, "--format", "md")
    assert proc.returncode == 0, proc.stderr
    assert (rep / "report.md").is_file()
    assert_user_error(run_cli("report", rep, "--format", "pdf"), "--format", "html, md or json")


# ---- Ctrl-C: 130, one line, nothing lost ----------------------------------------------------------------


def test_ctrl_c_exits_130_and_keeps_the_scores(tmp_path, tiny_dir):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(20000, seed=5)))
    cache = tmp_path / "cache"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    args = [str(CLI), "scan", str(tiny_dir), "--ref", str(tiny_dir), "--data", str(data), "--no-generate",
            "--batch-size", "1", "--cache-dir", str(cache), "--out", str(tmp_path / "rep")]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Off a terminal the scan prints a progress line every 10% of a stage: interrupt once the reference is part-scored.
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("dpo-doctor: scoring reference:") and not line.rstrip().endswith(" 0/40000"):
            break
    assert proc.poll() is None, "the scan ended before it could be interrupted: " + "".join(seen)[-2000:]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + err
    assert "Traceback" not in err and "interrupted" in err and "rerun" in err
    entries = list((cache / "scores").glob("*.npz"))
    assert entries, "the partial scores were not kept"
    import numpy as np

    with np.load(entries[0], allow_pickle=False) as f:
        done = int(np.isfinite(f["logp_chosen"]).sum() + np.isfinite(f["logp_rejected"]).sum())
    assert 0 < done < 40000, f"expected a partial entry, {done} of 40000 sequences scored"
    assert not list(cache.rglob("*.tmp*")), "a temporary file was left behind"


# ---- a full disk: one line naming where, no partial files, the scores kept ------------------------------------


def test_full_disk_while_writing_the_report(tmp_path, tiny_dir):
    """RLIMIT_FSIZE stands in for a full disk: the cache entries (KBs) fit, the HTML report (MBs of Plotly) does not."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(8)))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    args = [str(CLI), "scan", str(tiny_dir), "--ref", str(tiny_dir), "--data", str(data), "--no-generate",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "rep")]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert_user_error(proc, "report.html", "file size limit", "free space")
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name], "a partial file was left behind"
    assert (tmp_path / "rep" / "report.json").is_file()  # written before the views
    again = run_cli("scan", tiny_dir, "--ref", tiny_dir, "--data", data, "--no-generate", "--no-render",
                    "--cache-dir", tmp_path / "cache", "--out", tmp_path / "rep2")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "rep2" / "report.json").read_text())["settings"]["scored"] == []  # all from cache


# ---- the opt-ins, both ways: nothing runs without the flag, the flag does what it says ------------------------


def test_trust_remote_code_both_ways(tmp_path, tiny_dir):
    """A checkpoint whose config maps to its own modeling file; importing that file writes a marker."""
    marker = tmp_path / "remote-code-ran"
    ckpt = tmp_path / "run" / "checkpoint-1"
    shutil.copytree(tiny_dir, ckpt)
    # a model type transformers does not build (a native type with an auto_map loads natively, issue 21)
    (ckpt / "configuration_evil.py").write_text(
        "from transformers import LlamaConfig\n\n\n"
        "class EvilConfig(LlamaConfig):\n    model_type = 'evil_llama'\n")
    (ckpt / "modeling_evil.py").write_text(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['DPO_DOCTOR_TEST_MARKER']).write_text('ran')\n"
        "from transformers import LlamaForCausalLM\n"
        "from .configuration_evil import EvilConfig\n\n\n"
        "class EvilForCausalLM(LlamaForCausalLM):\n    config_class = EvilConfig\n")
    config = json.loads((ckpt / "config.json").read_text())
    config["model_type"] = "evil_llama"
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                          "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (ckpt / "config.json").write_text(json.dumps(config))
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(4)))
    env = {"DPO_DOCTOR_TEST_MARKER": str(marker), "HF_HOME": str(tmp_path / "hf"), "HF_MODULES_CACHE": str(tmp_path / "mods")}
    args = ["scan", tmp_path / "run", "--ref", tiny_dir, "--data", data, "--no-generate", "--no-render",
            "--cache-dir", tmp_path / "cache", "--out", tmp_path / "rep"]
    assert_user_error(run_cli(*args, env=env), "--trust-remote-code")
    assert not marker.exists(), "model code ran without --trust-remote-code"
    proc = run_cli(*args, "--trust-remote-code", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert marker.read_text() == "ran", "--trust-remote-code did not load the checkpoint's own code"


def test_unreadable_log_fails_before_any_model_loads(tmp_path, tiny_dir):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a log")
    proc = run_cli("scan", tiny_dir, "--ref", tiny_dir, "--log", notes, "--cache-dir", tmp_path / "cache",
                   "--out", tmp_path / "rep")
    assert_user_error(proc, "--log", "notes.txt", "Supported")
    assert not (tmp_path / "cache").exists()


def test_log_with_junk_values_is_read_with_a_warning(tmp_path):
    """Non-numeric values in trainer_state.json are skipped with a warning; the scan goes on (exit 0)."""
    run = _log_run(tmp_path / "junk", [{"step": 10, "loss": 0.6931}, {"step": 20, "loss": "oops"},
                                       {"step": 30, "loss": [1, 2]}, {"step": 40, "loss": 0.6931, "grad_norm": {}},
                                       {"step": 50, "loss": 0.6931}, {"step": 60, "loss": 0.6931}])
    proc = run_cli("scan", run, "--out", tmp_path / "rep")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert any("loss" in w for w in report["warnings"]), report["warnings"]
