"""A beta sweep on the tiny task: several DPO runs of ONE reference, for `dpo-doctor compare` (tests, benchmark).

Layout under OUT:
    reference/          the zoo's SFT reference (cached, `zoo.sft.train_reference`)
    train.jsonl         healthy preference pairs (right answer beats wrong; lengths and styles random)
    eval.jsonl          held-out pairs on other questions (what compare scores)
    probes.jsonl        a verifiable suite of the held-out questions (compare's quality signal, `--probe-suite`)
    runs/beta-B/        one run per beta (TRL layout, built-in trainer), with scenario.json and truth.jsonl so
                        `zoo.measure.grade_run` grades every checkpoint on questions no scan sees
Everything is seeded; a finished sweep (sweep.json matching the settings) is kept.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from dpo_doctor.zoo import sft, task
from dpo_doctor.zoo.scenarios import correctness_pair

SWEEP_VERSION = 1


@dataclass(frozen=True)
class SweepConfig:
    betas: tuple[float, ...] = (0.02, 0.1, 0.5)
    learning_rate: float = 5e-4
    steps: int = 48
    save_steps: int = 16
    n_train: int = 192
    n_eval: int = 48  # held-out questions: eval pairs and the probe suite
    n_truth: int = 64  # grading questions, disjoint from both
    seed: int = 0


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_name(beta: float) -> str:
    return f"beta-{beta:g}"


def build_sweep(out: Path, cfg: SweepConfig = SweepConfig(), force: bool = False, progress: bool = False) -> Path:
    """Build (or keep) the sweep under `out`; returns `out`. Runs are out/runs/beta-B/."""
    import torch

    from dpo_doctor.train.trainer import TrainConfig, train

    out = Path(out)
    stamp = out / "sweep.json"
    settings = {"version": SWEEP_VERSION, **asdict(cfg)}
    settings["betas"] = list(cfg.betas)
    if stamp.exists() and not force and json.loads(stamp.read_text()) == settings:
        return out
    if (out / "runs").exists():
        shutil.rmtree(out / "runs")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # see zoo/build.py: one thread on the 2 shared cores
    ref = sft.train_reference(out / "reference", seed=cfg.seed)
    train_q, eval_q = task.split_questions(cfg.seed, cfg.n_train, cfg.n_eval)
    rng = random.Random(cfg.seed + 1)
    _jsonl(out / "train.jsonl", [correctness_pair(q, rng) for q in train_q])
    _jsonl(out / "eval.jsonl", [correctness_pair(q, rng) for q in eval_q])
    _jsonl(out / "probes.jsonl", task.suite_rows(eval_q))
    truth = task.suite_rows(task.grading_questions(cfg.seed, cfg.n_truth))
    for beta in cfg.betas:
        run = out / "runs" / run_name(beta)
        run.mkdir(parents=True)
        train(TrainConfig(model=str(ref), data=str(out / "train.jsonl"), output_dir=str(run), beta=beta,
                          learning_rate=cfg.learning_rate, max_steps=cfg.steps, save_steps=cfg.save_steps,
                          logging_steps=4, warmup_steps=4, batch_size=8, seed=cfg.seed, max_length=256,
                          device="cpu", progress=progress))
        _jsonl(run / "truth.jsonl", truth)
        shutil.copyfile(out / "eval.jsonl", run / "eval.jsonl")
        record = {"name": run_name(beta), "kind": "sweep", "eval_data": "eval.jsonl", "scan_ref": str(ref),
                  "truth_suite": "truth.jsonl", "beta": beta}
        (run / "scenario.json").write_text(json.dumps(record, indent=2) + "\n")
    stamp.write_text(json.dumps(settings, indent=2))
    return out


def grade_sweep(out: Path, reports: Path) -> dict[str, dict[str, float | None]]:
    """{run name: {checkpoint: graded task/accuracy}} on the truth questions (`zoo.measure.grade_run`, which scans
    them apart from any compare; samples and scores cached under `reports`)."""
    from dpo_doctor.zoo.measure import grade_run

    return {run.name: grade_run(run, Path(reports)) for run in sorted((Path(out) / "runs").iterdir())
            if (run / "scenario.json").exists()}
