"""`dpo-doctor zoo build`: the reference (cached), then one run per scenario.

Layout under OUT (default examples/zoo/runs; `model="smollm2"`: examples/zoo/runs-smollm2, see smollm2_zoo.py):
    reference/            the SFT reference every scenario trains from
    reference_alternate/  an under-trained SFT (30 steps, other seed): the wrong reference of reference_mismatch
    <scenario>/           the run (TRL layout, see dpo_doctor.train.trainer), train.jsonl, eval.jsonl, scenario.json
A finished run (its scenario.json exists and matches) is kept unless force=True.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from dpo_doctor.errors import UserError, did_you_mean
from dpo_doctor.zoo import sft, task
from dpo_doctor.zoo.scenarios import BASE_TRAIN, SCENARIOS, Scenario, make_pairs


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


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


def fresh_run(out: Path, name: str, force: bool) -> Path | None:
    """out/<name>/ emptied and ready to train into; None when a finished run (scenario.json) is kept."""
    run = out / name
    if (run / "scenario.json").exists() and not force:
        return None
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    return run


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
    (run / "scenario.json").write_text(json.dumps(scenario_record(s, cfg, ref, scan_ref, time.time() - t0),
                                                  indent=2, sort_keys=True) + "\n")
    return run


MODELS = ("tiny", "smollm2")
DEFAULT_OUT = {"tiny": Path("examples/zoo/runs"), "smollm2": Path("examples/zoo/runs-smollm2")}


def build(out: Path | None = None, only: tuple[str, ...] = (), force: bool = False, progress: bool = True,
          model: str = "tiny") -> list[Path]:
    """Build the references (cached) and the selected scenarios; returns the run dirs.

    model: "tiny" (the synthetic-task zoo, default out examples/zoo/runs) or "smollm2" (SmolLM2-135M-Instruct, LoRA
    on its own answers, default out examples/zoo/runs-smollm2; see dpo_doctor/zoo/smollm2_zoo.py)."""
    import torch

    if model not in MODELS:
        from dpo_doctor.errors import did_you_mean

        raise UserError(f"unknown zoo model {model!r}{did_you_mean(model, MODELS)} Choose one of: {', '.join(MODELS)}")
    out = Path(out) if out is not None else DEFAULT_OUT[model]
    if model == "smollm2":
        from dpo_doctor.zoo import smollm2_zoo

        # one thread: on 2 shared, busy cores two threads ran SmolLM2's forward 3x slower (oversubscription)
        torch.set_num_threads(1)
        return smollm2_zoo.build(out, only, force, progress)
    unknown = [n for n in only if n not in SCENARIOS]
    if unknown:
        raise UserError(f"unknown scenario {unknown[0]!r}{did_you_mean(unknown[0], SCENARIOS)} "
                        f"Scenarios: {', '.join(SCENARIOS)}")
    # One thread, as the tests run it: with another process busy on the 2 cores, two OpenMP threads spun so much
    # that `dpo-doctor demo` took over 5 minutes instead of 22 s (measured 2026-12-02).
    torch.set_num_threads(1)
    ref = sft.train_reference(out / "reference", seed=0)
    chosen = [SCENARIOS[n] for n in (only or tuple(SCENARIOS))]
    needs_alt = any(s.scan_ref == "alternate" for s in chosen)
    alt_ref = sft.train_reference(out / "reference_alternate", seed=1, steps=30) if needs_alt else ref
    return [build_one(s, out, ref, alt_ref, force=force, progress=progress) for s in chosen]
