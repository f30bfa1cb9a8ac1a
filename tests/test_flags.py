"""One source for each setting: the flags of scan/watch come from ScanConfig's fields, the flags of train from
TrainConfig's (with TRL's argument names), loss hyperparameter defaults live in LossParams only, and each loss has
one name, TRL's where TRL has the loss."""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dpo_doctor import cli
from dpo_doctor.scan.config import ScanConfig
from dpo_doctor.train.config import LOSS_NAMES, TRL_LOSS_TYPES, LossParams, TrainConfig


def _option_names(cls, **kw) -> dict[str, list[str]]:
    """field name -> every spelling its flag accepts."""
    out = {}
    for p in cli.options_of(cls, **kw):
        decls = [d for decl in p.default.param_decls for d in decl.split("/")]
        out[p.name] = decls
    return out


def _help_fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if "help" in f.metadata]


def test_every_scan_setting_is_a_flag_and_old_spellings_still_work():
    names = _option_names(ScanConfig)
    assert set(names) == set(_help_fields(ScanConfig)) == {f.name for f in dataclasses.fields(ScanConfig)} - {"run_dir"}
    spelled = {d for ds in names.values() for d in ds}
    old = ["--data", "--ref", "--base", "--beta", "--out", "--checkpoints", "--skip-checkpoint", "--max-pairs",
           "--max-length", "--batch-size", "--device", "--dtype", "--device-map", "--cache-dir", "--seed",
           "--no-generate", "--prompts", "--probe-suite", "--judge", "--max-prompts", "--samples-per-prompt",
           "--max-new-tokens", "--select", "--ignore", "--set", "--data-is-eval", "--log", "--trust-pickles",
           "--trust-remote-code", "--no-render"]  # every flag scan had before they were made from the fields
    assert not [o for o in old if o not in spelled]


def test_a_new_field_with_help_becomes_a_flag_with_its_default_and_help():
    """What another branch's new ScanConfig field gets after the merge, with no CLI edit."""

    @dataclass(frozen=True)
    class Cfg:
        run_dir: Path
        max_widgets: int = field(default=7, metadata={"help": "Widgets per pass (default 7)."})
        fast_mode: bool = field(default=False, metadata={"help": "Go fast (default off)."})
        columns: tuple[str, ...] = field(default=(), metadata={"help": "Columns.", "flag": "--cols"})
        internal: int = 3  # no help: not a flag

    params = {p.name: p for p in cli.options_of(Cfg)}
    assert set(params) == {"max_widgets", "fast_mode", "columns"}
    assert params["max_widgets"].default.param_decls[0] == "--max-widgets"
    assert params["max_widgets"].default.default == 7 and params["max_widgets"].annotation is int
    assert params["max_widgets"].default.help == "Widgets per pass (default 7)."
    assert params["fast_mode"].default.param_decls[0] == "--fast-mode/--no-fast-mode"
    assert params["columns"].default.param_decls[0] == "--cols"
    assert params["columns"].annotation == typing.Optional[list[str]]
    made = cli.config_from(Cfg, {"max_widgets": 2, "fast_mode": True, "columns": ["a,b", "c"]}, run_dir=Path("r"))
    assert made == Cfg(run_dir=Path("r"), max_widgets=2, fast_mode=True, columns=("a", "b", "c"))


def _parsed(monkeypatch, command: str, argv: list[str]):
    """The config a command builds from argv, captured where it is handed to the pipeline or the trainer."""
    seen = {}
    if command == "scan":
        monkeypatch.setattr(cli, "scan_and_report", lambda cfg, fail_on=None: seen.setdefault("cfg", cfg) and 0)
    else:
        import dpo_doctor.train.trainer as trainer

        monkeypatch.setattr(trainer, "train", lambda cfg: seen.setdefault("cfg", cfg) and "out")
    assert cli.run([command, *argv]) == 0
    return seen["cfg"]


def test_scan_flags_parse_into_the_config(monkeypatch, tmp_path):
    cfg = _parsed(monkeypatch, "scan", [str(tmp_path), "--data", "p.jsonl", "--no-generate", "--no-render",
                                        "--checkpoints", "checkpoint-1*,checkpoint-20", "--skip-checkpoint", "a",
                                        "--skip-checkpoint", "b", "--set", "DPO101.max_ratio=2", "--select",
                                        "DPO1,DPO2", "--max-pairs", "5", "--beta", "0.2"])
    assert cfg == dataclasses.replace(
        ScanConfig(run_dir=tmp_path), data=Path("p.jsonl"), generate=False, render=False,
        checkpoint_filter=("checkpoint-1*", "checkpoint-20"), skip_checkpoints=("a", "b"),
        rule_settings=("DPO101.max_ratio=2",), select=("DPO1", "DPO2"), max_pairs=5, beta=0.2)
    assert _parsed(monkeypatch, "scan", [str(tmp_path)]) == ScanConfig(run_dir=tmp_path)  # defaults: the fields'


@pytest.mark.parametrize("spelling", ["trl", "kebab", "ours"])
def test_train_accepts_trl_argument_names(monkeypatch, spelling):
    names = {
        "trl": ["--model_name_or_path", "m", "--dataset_name", "d", "--output_dir", "o", "--learning_rate", "5e-6",
                "--loss_type", "robust", "--gradient_accumulation_steps", "4", "--num_train_epochs", "2",
                "--use_peft", "--beta", "0.05", "--max_length", "256", "--per_device_train_batch_size", "2",
                "--label_smoothing", "0.1", "--lora_target_modules", "q_proj,v_proj"],
        "kebab": ["--model-name-or-path", "m", "--data", "d", "--output-dir", "o", "--learning-rate", "5e-6",
                  "--loss-type", "robust", "--gradient-accumulation-steps", "4", "--num-train-epochs", "2",
                  "--use-peft", "--beta", "0.05", "--max-length", "256", "--per-device-train-batch-size", "2",
                  "--label-smoothing", "0.1", "--lora-target-modules", "q_proj", "--lora-target-modules", "v_proj"],
        "ours": ["--model", "m", "--data", "d", "-o", "o", "--lr", "5e-6", "--loss", "robust", "--grad-accum", "4",
                 "--epochs", "2", "--lora", "--beta", "0.05", "--max-length", "256", "--batch-size", "2",
                 "--label-smoothing", "0.1", "--lora-target-modules", "q_proj,v_proj"],
    }[spelling]
    cfg = _parsed(monkeypatch, "train", names)
    assert cfg == TrainConfig(model="m", data="d", output_dir="o", learning_rate=5e-6, loss="robust", grad_accum=4,
                              epochs=2.0, lora=True, beta=0.05, max_length=256, batch_size=2, label_smoothing=0.1,
                              lora_target_modules=("q_proj", "v_proj"))


def test_train_defaults_are_the_configs(monkeypatch):
    cfg = _parsed(monkeypatch, "train", ["--model", "m", "--data", "d", "-o", "o", "--no-bf16"])
    assert cfg == TrainConfig(model="m", data="d", output_dir="o", bf16=False)


def test_loss_defaults_have_one_home():
    """TrainConfig and LossInputs take every loss hyperparameter, and its default, from LossParams."""
    from dpo_doctor.train.losses import LossInputs

    own = {f.name: f.default for f in dataclasses.fields(LossParams)}
    for cls in (TrainConfig, LossInputs):
        assert issubclass(cls, LossParams)
        assert {f.name: f.default for f in dataclasses.fields(cls) if f.name in own} == own
    assert TrainConfig(model="m", data="d", output_dir="o").loss_params() == own


def test_one_name_per_loss_and_trl_names_where_trl_has_the_loss():
    import trl
    from trl import DPOConfig

    from dpo_doctor.rules.records import VARIANTS
    from dpo_doctor.train.losses import LOSSES

    assert tuple(LOSSES) == LOSS_NAMES
    help_text = DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    trl_types = set(re.findall(r"`'(\w+)'`", help_text))
    assert {"sigmoid", "hinge", "ipo", "robust", "sigmoid_norm"} <= trl_types, (trl.__version__, trl_types)
    assert set(TRL_LOSS_TYPES) == set(LOSS_NAMES) & trl_types  # where TRL names it, we use TRL's name
    assert set(LOSS_NAMES) <= set(VARIANTS)  # a recommendation names a trainable loss by the same string
    assert "robust_dpo" not in VARIANTS and "dpo" not in VARIANTS


def test_every_rule_recommends_a_known_variant():
    from dpo_doctor.rules import RULES
    from dpo_doctor.rules.records import VARIANTS

    for rule in RULES.values():
        for ex in rule.examples:
            assert ex.variant is None or ex.variant in VARIANTS, (rule.code, ex.variant)



def test_repro_changes_the_recorded_recipe_by_loss_name():
    import dataclasses

    from dpo_doctor.errors import UserError
    from dpo_doctor.report_model import Recommendation
    from dpo_doctor.train.repro import ReproConfig, changed_config

    recorded = {"model": "m", "data": "d", "output_dir": "old", "loss": "sigmoid", "beta": 0.1, "seed": 7,
                "lora_target_modules": ["q_proj"], "trainer": "dpo-doctor"}
    rec = Recommendation(text="t", beta=None, variant="robust", params={"label_smoothing": 0.2})
    cfg, change = changed_config(recorded, rec, ReproConfig(report_dir=Path(".")), Path("new"))
    assert cfg == TrainConfig(model="m", data="d", output_dir="new", loss="robust", label_smoothing=0.2, seed=7,
                              lora_target_modules=("q_proj",))
    assert change == {"loss": "robust", "label_smoothing": 0.2}
    with pytest.raises(UserError, match="did you mean robust"):
        changed_config(recorded, dataclasses.replace(rec, variant="robust_dpo"), ReproConfig(report_dir=Path(".")),
                       Path("new"))


def test_check_config_reads_no_file_and_the_scan_reads_each_input_once(monkeypatch, tmp_path, tiny_dir, pairs_jsonl):
    """The probe suite and an explicit --log are read once, by the scan (before any model), never by check_config."""
    import json

    import dpo_doctor.data.suites as suites
    import dpo_doctor.trainlog as trainlog
    from dpo_doctor.scan.config import check_config
    from dpo_doctor.scan.pipeline import scan

    reads = {"suite": 0, "log": 0}
    read_rows, load_train_log = suites.read_rows, trainlog.load_train_log

    def counted_rows(*a, **k):
        reads["suite"] += 1
        return read_rows(*a, **k)

    def counted_log(*a, **k):
        reads["log"] += 1
        return load_train_log(*a, **k)

    monkeypatch.setattr(suites, "read_rows", counted_rows)
    monkeypatch.setattr(trainlog, "load_train_log", counted_log)
    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(json.dumps({"prompt": f"{i} plus 1 is", "answer": str(i + 1), "check": "numeric"}) + "\n"
                             for i in range(3)))
    log = tmp_path / "trainer_state.json"
    log.write_text(json.dumps({"global_step": 20, "log_history": [{"step": 10, "loss": 0.69}, {"step": 20, "loss": 0.6}]}))
    cfg = dataclasses.replace(ScanConfig(run_dir=tiny_dir), ref=tiny_dir, data=pairs_jsonl, probe_suite=str(suite),
                              log=log, max_prompts=2, samples_per_prompt=1, max_new_tokens=4, out=tmp_path / "rep",
                              cache_dir=tmp_path / "cache", render=False)
    check_config(cfg)
    assert reads == {"suite": 0, "log": 0}
    report = json.loads((scan(cfg) / "report.json").read_text())
    assert reads == {"suite": 1, "log": 1}
    assert report["train_log"]["n_rows"] == 2 and "task/accuracy" in report["checkpoints"][0]["metrics"]
    assert {"sampling", "kl_scoring"} <= set(report["timings"]["stages"])
    assert {"sampling", "kl_scoring"} <= set(report["timings"]["checkpoints"]["reference"])
