"""DoctorCallback: diagnoses while TRL's DPOTrainer (and the built-in trainer) trains a tiny model.

Each training run is a few CPU steps of the conftest tiny Llama. Checked: a finding is printed during training,
stop_on stops it after the report is written, report.json lists the finding, the callback's checkpoint numbers equal
a later `scan` of the run (fresh cache, 1e-5), DPO004 stays silent on a clean LoRA run and fires when the logged
eval rewards are doctored to TRL's reference-is-policy zeros, and trackers get metrics without imports.
"""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.conftest import make_pairs

KEYS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
        "logps/rejected", "drift/chosen", "margins_per_token")


def trl_trainer(model_dir, out, callback, *, lr, lora=False, eval_pairs=None, max_steps=4, save_steps=2):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer

    tok = PreTrainedTokenizerFast.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    evals = dict(eval_strategy="steps", eval_steps=save_steps, per_device_eval_batch_size=4) if eval_pairs else {}
    args = DPOConfig(output_dir=str(out), bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none",
                     max_steps=max_steps, save_steps=save_steps, logging_steps=1, per_device_train_batch_size=4,
                     learning_rate=lr, beta=0.1, max_length=64, seed=0, save_only_model=True,
                     dataloader_num_workers=0, disable_tqdm=True, **evals)
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(make_pairs(16, seed=5)),
                      eval_dataset=Dataset.from_list(eval_pairs) if eval_pairs else None, processing_class=tok,
                      peft_config=peft_config, callbacks=[callback] if callback is not None else [])


def scan_config(**given):
    from dpo_doctor.scan.pipeline import ScanConfig

    return ScanConfig(**given)


def read(path: Path) -> dict:
    return json.loads((path / "report.json").read_text())


def assert_same_numbers(live: dict, later: dict) -> None:
    by_name = {c["name"]: c["metrics"] for c in later["checkpoints"]}
    assert [c["name"] for c in live["checkpoints"]] == list(by_name)
    for entry in live["checkpoints"]:
        for key in KEYS:
            assert entry["metrics"][key] == pytest.approx(by_name[entry["name"]][key], rel=1e-5, abs=1e-5), key


def rules_with_eval_data(report: dict, run: Path) -> list:
    """The rules over a report as if settings.data_is_eval were recorded (until ScanConfig carries it)."""
    from dpo_doctor.rules import facts_from_report, run_rules
    from dpo_doctor.trainlog import read_train_log

    report = {**report, "settings": {**report["settings"], "data_is_eval": True}}
    return run_rules(facts_from_report(report, read_train_log(run)), select={"DPO004"})


def test_import_dpo_doctor_does_not_import_transformers():
    code = "import sys, dpo_doctor, dpo_doctor.integrations; assert 'transformers' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0
    import dpo_doctor
    from transformers import TrainerCallback

    from dpo_doctor.integrations import DoctorCallback

    assert dpo_doctor.DoctorCallback is DoctorCallback and issubclass(DoctorCallback, TrainerCallback)


def test_trackers_log_only_to_enabled_imported_modules(monkeypatch):
    from dpo_doctor.integrations.trackers import Trackers

    calls = []
    fake = types.ModuleType("wandb")
    fake.run = object()
    fake.AlertLevel = types.SimpleNamespace(WARN="WARN", ERROR="ERROR")
    fake.log = lambda data: calls.append(("log", data))
    fake.alert = lambda **kw: calls.append(("alert", kw))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    had_trackio = "trackio" in sys.modules
    diag = {"code": "DPO001", "name": "numerical-instability", "severity": "error", "message": "NaN"}
    done = Trackers(["wandb", "trackio"]).log(6, {"rewards/margins": 0.5, "gen/kl_mean": 2.0}, [diag], [diag])
    assert done == ["wandb"] and ("trackio" in sys.modules) == had_trackio  # trackio not imported: not loaded
    logged = calls[0][1]
    assert logged["dpo-doctor/rewards/margins"] == 0.5 and logged["dpo-doctor/gen/kl_mean"] == 2.0
    assert logged["dpo-doctor/errors"] == 1.0 and logged["train/global_step"] == 6
    assert calls[1] == ("alert", {"title": "dpo-doctor DPO001 numerical-instability", "text": "NaN", "level": "ERROR"})
    assert Trackers("none").log(6, {}, [diag], [diag]) == []


def test_trl_nan_is_printed_and_stops_training(tmp_path, tiny_dir, capsys):
    from dpo_doctor import DoctorCallback

    run = tmp_path / "run"
    doctor = DoctorCallback(data=make_pairs(8, seed=6), stop_on="error", cache_dir=tmp_path / "cache", strict=True)
    trainer = trl_trainer(tiny_dir, run, doctor, lr=1e30, max_steps=8, save_steps=4)  # step 1 overflows
    trainer.train()
    out = capsys.readouterr().out
    assert "[step 2] DPO001 numerical-instability (error)" in out
    assert "stopping training at step 2 (stop_on=error): DPO001" in out
    assert trainer.state.global_step == 2  # max_steps was 8
    report = read(run / "dpo-doctor")
    assert "DPO001" in [d["code"] for d in report["diagnoses"]]
    assert (run / "dpo-doctor" / "pairs.jsonl").exists() and (run / "dpo-doctor" / "report.html").exists()


def test_trl_lora_eval_set_numbers_match_a_later_scan_and_dpo004(tmp_path, tiny_dir, capsys):
    from dpo_doctor import DoctorCallback
    from dpo_doctor.scan.pipeline import scan

    run = tmp_path / "run"
    doctor = DoctorCallback(cache_dir=tmp_path / "cache", strict=True)  # no data: the attached trainer's eval set
    trainer = trl_trainer(tiny_dir, run, None, lr=5e-3, lora=True, eval_pairs=make_pairs(8, seed=6))
    doctor.attach(trainer)
    trainer.train()
    out = capsys.readouterr().out
    assert "checkpoint-2 diagnosed in" in out and "checkpoint-4 diagnosed in" in out
    live = read(run / "dpo-doctor")
    assert doctor.data_is_eval and live["data"]["path"].endswith("eval_pairs.jsonl")
    later = scan(scan_config(run_dir=run, data=run / "dpo-doctor" / "eval_pairs.jsonl", beta=0.1, max_length=64,
                             out=tmp_path / "later", cache_dir=tmp_path / "fresh-cache", generate=False,
                             render=False))
    assert_same_numbers(live, read(later))
    if "data_is_eval" in live["settings"]:
        assert live["settings"]["data_is_eval"] is True
        assert "DPO004" not in [d["code"] for d in live["diagnoses"]]
    assert rules_with_eval_data(live, run) == []  # clean run: TRL's eval numbers agree with the scan's

    state = run / "checkpoint-4" / "trainer_state.json"  # as if the trainer's reference had been the policy
    data = json.loads(state.read_text())
    for row in data["log_history"]:
        row.update({k: 0.0 for k in row if k.startswith("eval_rewards/")})
    state.write_text(json.dumps(data))
    found = rules_with_eval_data(live, run)
    assert [d.code for d in found] == ["DPO004"] and "exactly 0" in found[0].message


def test_builtin_trainer_takes_the_callback_and_stops(tmp_path, tiny_dir, pairs_jsonl, capsys):
    from dpo_doctor import DoctorCallback
    from dpo_doctor.scan.pipeline import scan
    from dpo_doctor.train.trainer import TrainConfig, train

    run = tmp_path / "run"
    cfg = TrainConfig(model=str(tiny_dir), data=str(pairs_jsonl), output_dir=str(run), learning_rate=0.0,
                      max_steps=8, batch_size=4, logging_steps=1, save_steps=2, max_length=64, progress=False)
    doctor = DoctorCallback(data=pairs_jsonl, stop_on=["DPO201"], cache_dir=tmp_path / "cache", strict=True)
    train(cfg, callbacks=[doctor])  # lr 0: the loss sits at ln 2 and DPO201 fires from the log at step 4
    out = capsys.readouterr().out
    assert "[step 4] DPO201 log-loss-at-ln2 (error)" in out and "stopping training at step 4" in out
    assert not (run / "checkpoint-6").exists()
    live = read(run / "dpo-doctor")
    assert [c["step"] for c in live["checkpoints"]] == [2, 4]
    assert {"no_learning"} & {d["kind"] for d in live["diagnoses"]}
    later = scan(scan_config(run_dir=run, data=pairs_jsonl, max_length=64, out=tmp_path / "later",
                             cache_dir=tmp_path / "fresh-cache", generate=False, render=False))
    assert_same_numbers(live, read(later))


def test_settings_come_from_one_scan_config():
    """config= gives every scan setting; keyword arguments at a non-default value override it; the trainer's args
    give beta and max_length; the run's folder, pairs and reference are filled in per save."""
    from dataclasses import replace

    from dpo_doctor import DoctorCallback
    from dpo_doctor.integrations.callback import DEFAULT_CONFIG
    from dpo_doctor.scan.config import ScanConfig

    assert DoctorCallback().config == DEFAULT_CONFIG and DEFAULT_CONFIG.max_pairs == 512
    assert DoctorCallback(max_pairs=None).config.max_pairs is None  # None still means "every pair"
    given = ScanConfig(run_dir=Path("."), data=None, max_pairs=64, device="cpu", trust_remote_code=True,
                       rule_settings=("DPO101.ratio=1.5",))
    doctor = DoctorCallback(config=given, select=["DPO101"], cache_dir="/tmp/c", beta=0.05)
    assert doctor.config == replace(given, select=("DPO101",), cache_dir="/tmp/c", beta=0.05)
    args = types.SimpleNamespace(output_dir="/runs/x", beta=0.1, max_length=77)
    doctor.data_path, doctor.ref_path, doctor.report_dir = Path("p.jsonl"), Path("ref"), Path("/runs/x/dpo-doctor")
    cfg = doctor.scan_config(args)
    assert cfg == replace(doctor.config, run_dir=Path("/runs/x"), data=Path("p.jsonl"), ref=Path("ref"), beta=0.05,
                          out=Path("/runs/x/dpo-doctor"), max_length=77, generate=False, render=False)
    assert DoctorCallback(max_length=32).scan_config(args).max_length == 32
    assert DoctorCallback().scan_config(args).beta == 0.1  # the trainer's beta when none is given


def test_no_stack_walking_without_attach_the_eval_set_is_not_guessed(tmp_path, tiny_dir, capsys):
    """Without data= or attach(trainer) the callback does not go looking for the trainer: log-only, and it says
    how to give it pairs (the eval dataloader the hooks receive holds token ids only, not the pairs' text)."""
    import inspect

    from dpo_doctor import DoctorCallback
    from dpo_doctor.integrations import callback

    assert "currentframe" not in inspect.getsource(callback)
    trl_trainer(tiny_dir, tmp_path / "run", DoctorCallback(strict=True), lr=1e-3, eval_pairs=make_pairs(4, seed=6),
                max_steps=2, save_steps=2).train()
    out = capsys.readouterr().out
    assert "no pairs: log-only diagnoses (pass data= or attach(trainer))" in out
    assert read(tmp_path / "run" / "dpo-doctor")["log_only"] is True
