"""report.py: build_report from typed records, the atomic writer, and the one validating reader."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from dpo_doctor import report as rep
from dpo_doctor.errors import UserError


def _records():
    run = rep.RunInfo(name="exp1", path="/runs/exp1", beta=0.1, beta_source="cli", loss_type="sigmoid",
                      framework="trl")
    ref = rep.ReferenceInfo(path="/models/sft", kind="full", base=None, source="--ref", metrics={"gen/kl_mean": 0.0})
    data = rep.DataInfo(path="/d.jsonl", format="standard_explicit", n_pairs=2, n_source_rows=2, n_excluded=0,
                        n_dropped_too_long=0, max_length=1024, stats={"length/mean_ratio": 1.5})
    ckpts = [rep.CheckpointRecord(name="checkpoint-2", step=2, path="/runs/exp1/checkpoint-2", kind="full",
                                  metrics={"rewards/margins": 0.25, "gen/kl_mean": math.nan})]
    diagnosis = {"diagnoses": [{"code": "DPO101", "name": "length-exploitation", "kind": "length_exploitation",
                                "severity": "warning", "checkpoint": "checkpoint-2", "message": "m",
                                "evidence": {"gen/length_ratio": {"value": 1.8, "threshold": 1.5,
                                                                  "reference_value": None}},
                                "recommendation": {"text": "raise beta", "beta": 0.2, "variant": None, "params": {}},
                                "explanation": "e"}],
                 "verdict": "warning", "summary": "s", "best_checkpoint": {"name": "checkpoint-2", "step": 2,
                                                                             "reason": "only one"}}
    return run, ref, data, ckpts, diagnosis


def _frame():
    return pl.DataFrame({"checkpoint": ["checkpoint-2"] * 2, "step": [2, 2], "pair_id": [0, 1], "margin": [0.1, 0.4],
                         "len_chosen": [3, 4], "len_rejected": [2, 2]})


def test_build_write_load_round_trip(tmp_path):
    run, ref, data, ckpts, diagnosis = _records()
    doc = rep.build_report(run=run, reference=ref, data=data, settings={"seed": 0}, checkpoints=ckpts,
                           metric_info={}, train_log=None, warnings=["w"], diagnosis=diagnosis)
    assert doc["checkpoints"][0]["metrics"]["gen/kl_mean"] is None  # NaN: JSON has none
    rep.write_report(tmp_path / "out", doc, {"pairs": _frame(), "pair_texts": None, "samples": None, "train_log": None})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pairs.parquet", "report.json"]  # no temp files
    bundle = rep.load_report(tmp_path / "out")
    assert bundle.doc.run.name == "exp1" and bundle.checkpoints[0].step == 2 and bundle.doc.run.beta == 0.1
    assert bundle.doc.diagnoses[0].evidence["gen/length_ratio"].threshold == 1.5
    assert bundle.doc.best_checkpoint.name == "checkpoint-2" and bundle.doc.checkpoints[0].metrics["gen/kl_mean"] is None
    assert bundle.pairs.equals(_frame()) and bundle.samples is None
    assert bundle.worst_severity() == "warning"
    assert bundle.raw["files"] == bundle.doc.files == {"pairs": "pairs.parquet", "pair_texts": None, "samples": None, "train_log": None}


@pytest.mark.parametrize("path, value, message", [
    (("run", "beta"), "0.1", 'run.beta is a string'),
    (("checkpoints", 0, "metrics", "rewards/margins"), [1], 'checkpoints[0].metrics["rewards/margins"] is a list'),
    (("checkpoints", 0, "step"), True, "checkpoints[0].step is a boolean"),
    (("diagnoses", 0, "recommendation", "text"), None, "diagnoses[0].recommendation.text is null"),
    (("diagnoses", 0, "evidence", "gen/length_ratio", "value"), "big", 'evidence["gen/length_ratio"].value'),
    (("verdict",), "fine", "verdict is a string ('fine'), expected 'healthy' or 'no-failure-found' or 'warning' or 'error'"),
])
def test_wrong_types_are_named(tmp_path, path, value, message):
    run, ref, data, ckpts, diagnosis = _records()
    doc = rep.build_report(run=run, reference=ref, data=data, settings={}, checkpoints=ckpts, metric_info={},
                           train_log=None, warnings=[], diagnosis=diagnosis)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (tmp_path / "report.json").write_text(json.dumps(doc))
    with pytest.raises(UserError) as err:
        rep.load_report(tmp_path)
    assert message in str(err.value) and "report.json" in str(err.value)


def test_missing_required_field_and_nesting_bomb(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": 1, "run": {"beta": 0.1}, "checkpoints": []}))
    with pytest.raises(UserError, match=r"run\.name is missing"):
        rep.load_report(tmp_path)
    (tmp_path / "report.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(UserError, match="not valid JSON"):
        rep.load_report(tmp_path)


def test_files_may_not_leave_the_report_folder(tmp_path):
    run, ref, data, ckpts, diagnosis = _records()
    doc = rep.build_report(run=run, reference=ref, data=data, settings={}, checkpoints=ckpts, metric_info={},
                           train_log=None, warnings=[], diagnosis=diagnosis)
    outside = tmp_path / "elsewhere.parquet"
    _frame().write_parquet(outside)
    (tmp_path / "rep").mkdir()
    for name in ("../elsewhere.parquet", str(outside)):
        (tmp_path / "rep" / "report.json").write_text(json.dumps({**doc, "files": {"pairs": name}}))
        with pytest.raises(UserError, match="outside the report folder"):
            rep.load_report(tmp_path / "rep")
