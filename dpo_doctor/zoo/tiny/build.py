"""`dpo-doctor zoo build` (tiny zoo): the reference (cached), then one run per scenario.

Layout under OUT (default examples/zoo/runs):
    reference/            the SFT reference every scenario trains from
    reference_alternate/  an under-trained SFT (30 steps, other seed): the wrong reference of reference_mismatch
    <scenario>/           the run folder (dpo_doctor.zoo.runfolder)
A finished run (its scenario.json exists) is kept unless force=True.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from dpo_doctor.errors import UserError, did_you_mean
from dpo_doctor.zoo.runfolder import fresh_run, write_jsonl, write_record
from dpo_doctor.zoo.tiny import sft, task
from dpo_doctor.zoo.tiny.scenarios import BASE_TRAIN, SCENARIOS, Scenario, make_pairs

DEFAULT_OUT = Path("examples/zoo/runs")
# truth.jsonl: questions neither training nor the scan sees, on which benchmarks/zoo_confusion.py grades every
# checkpoint to check the one the doctor ships. The tiny zoo's scan itself has no verifiable suite: on it DPO
# lowers the graded accuracy of the generations in nearly every run, the healthy one included (0.65 -> 0.31-0.42
# within 9 of the result), so a suite makes DPO110 fire everywhere and the zoo would stop calibrating the
# implicit-reward rules it was built for; the SmolLM2 zoo's scan has one.
GRADING = 64


def scenario_record(s: Scenario, cfg, ref: Path, scan_ref: Path, seconds: float) -> dict:
    """scenario.json: what was injected and every setting, so the zoo is reproducible and self-describing."""
    return {"name": s.name, "kind": s.kind, "description": s.description, "n_train": s.n_train, "n_eval": s.n_eval,
            "train_data": "train.jsonl", "eval_data": "eval.jsonl", "reference": str(ref), "scan_ref": str(scan_ref),
            "truth_suite": "truth.jsonl",
            "settings": dataclasses.asdict(cfg), "train_seconds": round(seconds, 1)}


def build_one(s: Scenario, out: Path, ref: Path, alt_ref: Path, force: bool = False, progress: bool = True) -> Path:
    """Train one scenario into out/<name>/ and write its data and scenario.json."""
    from dpo_doctor.train.trainer import TrainConfig, train

    run = fresh_run(out, s.name, force)
    if run is None:
        return out / s.name
    train_rows, eval_rows = make_pairs(s)
    write_jsonl(run / "train.jsonl", train_rows)
    write_jsonl(run / "eval.jsonl", eval_rows)
    write_jsonl(run / "truth.jsonl", task.suite_rows(task.grading_questions(0, GRADING)))
    cfg = TrainConfig(model=str(ref), data=str(run / "train.jsonl"), output_dir=str(run),
                      eval_data=str(run / "eval.jsonl"), device="cpu", progress=progress, **{**BASE_TRAIN, **s.train})
    t0 = time.time()
    train(cfg)
    scan_ref = alt_ref if s.scan_ref == "alternate" else ref
    write_record(run, scenario_record(s, cfg, ref, scan_ref, time.time() - t0))
    return run


def build(out: Path = DEFAULT_OUT, only: tuple[str, ...] = (), force: bool = False,
          progress: bool = True) -> list[Path]:
    """The references (cached), then the selected scenarios; returns the run dirs."""
    unknown = [n for n in only if n not in SCENARIOS]
    if unknown:
        raise UserError(f"unknown scenario {unknown[0]!r}{did_you_mean(unknown[0], SCENARIOS)} "
                        f"Scenarios: {', '.join(SCENARIOS)}")
    out = Path(out)
    ref = sft.train_reference(out / "reference", seed=0)
    chosen = [SCENARIOS[n] for n in (only or tuple(SCENARIOS))]
    needs_alt = any(s.scan_ref == "alternate" for s in chosen)
    alt_ref = sft.train_reference(out / "reference_alternate", seed=1, steps=30) if needs_alt else ref
    return [build_one(s, out, ref, alt_ref, force=force, progress=progress) for s in chosen]
