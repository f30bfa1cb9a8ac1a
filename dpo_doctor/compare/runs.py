"""Which runs a compare covers, that they share one reference, and each run's beta and learning rate (with sources).

A RUN argument is a run (a training output dir: checkpoint-N/ folders, a model at its root, a trainer_state.json or
our trainer's config) or a sweep folder whose sub-folders are runs. Runs must be of ONE reference: a run's own
reference (our trainer's config, a LoRA adapter's base, a ref/ sub-adapter) is compared by what its weights compute
(`engine.loading.weights_fingerprint`, so a copy of the same SFT model matches), with --ref when given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dpo_doctor.errors import UserError

RUN_MARKERS = ("config.json", "adapter_config.json", "trainer_state.json", "dpo_doctor_config.json")
STEP_DIR = re.compile(r"^(checkpoint-|global_step)[0-9]+$")


@dataclass(frozen=True)
class RunHparams:
    """The settings a compare reads from a run to recommend the next one; `*_source` says where each came from."""

    beta: float | None
    beta_source: str
    learning_rate: float | None
    lr_source: str


def is_run(path: Path) -> bool:
    """A training output dir (or a single model dir), as `dpo-doctor scan` reads one."""
    if not path.is_dir():
        return False
    if any((path / m).exists() for m in RUN_MARKERS):
        return True
    return any(c.is_dir() and STEP_DIR.match(c.name) for c in path.iterdir())


def expand_runs(args: tuple[Path, ...] | list[Path]) -> list[Path]:
    """Run dirs from the RUN arguments: a run as itself, a sweep folder as its sub-folders that are runs."""
    runs: list[Path] = []
    for arg in args:
        path = Path(arg)
        if not path.exists():
            raise UserError(f"{path} does not exist; pass run dirs (with checkpoint-N/ folders) or a sweep folder "
                            "whose sub-folders are runs")
        if is_run(path):
            runs.append(path)
            continue
        subs = sorted(c for c in path.iterdir() if is_run(c)) if path.is_dir() else []
        if not subs:
            raise UserError(f"{path} is neither a run (no checkpoint-N/ folders, config.json or trainer_state.json) "
                            "nor a sweep folder of runs; pass the runs' output dirs")
        runs += subs
    unique = list(dict.fromkeys(p.resolve() for p in runs))
    if len(unique) < 2:
        raise UserError(f"compare needs at least two runs, got {len(unique)} ({', '.join(str(p) for p in runs)}); "
                        "pass several run dirs or a sweep folder, or use `dpo-doctor scan` for one run")
    return unique


def run_names(runs: list[Path]) -> list[str]:
    """Unique, file-safe names: the folder name, with its parent's prefixed where two runs share a name."""
    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text) or "run"

    names = [safe(p.name) for p in runs]
    return [safe(f"{p.parent.name}_{p.name}") if names.count(n) > 1 else n for p, n in zip(runs, names)]


def _identity(spec) -> str:
    from dpo_doctor.engine.loading import weights_fingerprint

    return weights_fingerprint(spec)


def check_one_reference(runs: list[Path], ref: Path | None, base: Path | None, trust_pickles: bool) -> str:
    """The shared reference's path; UserError naming the runs when their references differ (or cannot be told)."""
    from dpo_doctor.discover import discover

    given = discover(runs[0], ref=ref, base=base, trust_pickles=trust_pickles).reference if ref is not None else None
    own = {}
    for run in runs:
        found = discover(run, ref=None, base=base, trust_pickles=trust_pickles)
        if found.reference is not None:
            own[run] = (found.reference, found.reference_source)
        elif ref is None:
            raise UserError(f"cannot tell the reference of run {run} (full-weight checkpoints, no record of it): pass "
                            "--ref PATH, the model every run of the sweep started from")
    target = given if given is not None else next(iter(own.values()))[0]
    want = _identity(target)
    for run, (spec, source) in own.items():
        if _identity(spec) != want:
            against = f"--ref {ref}" if given is not None else f"{runs[0].name}'s reference {target.path}"
            raise UserError(f"run {run} was trained from {spec.path} ({source}), not from {against}: compare runs of "
                            "one reference only (their KL and quality are measured against it)")
    return str(target.path)


def run_hparams(run: Path, scan_beta: float, scan_beta_source: str, train_log, trust_pickles: bool) -> RunHparams:
    """beta as the scan resolved it (cli / run_config / default) and the peak learning rate: the run's config
    (runconfig.py: our trainer's JSON, training_args.bin read without unpickling, ...), else the largest logged `learning_rate`."""
    from dpo_doctor.runconfig import read_train_config

    config = read_train_config(run, [c for c in run.iterdir() if c.is_dir() and STEP_DIR.match(c.name)]).values
    lr, lr_source = config.get("learning_rate"), "run config"
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr <= 0:
        lr, lr_source = None, "unknown"
        if train_log is not None and "learning_rate" in train_log.columns:
            logged = [v for v in train_log["learning_rate"].to_list() if isinstance(v, (int, float)) and v > 0]
            if logged:
                lr, lr_source = float(max(logged)), "training log (peak logged value)"
    sources = {"cli": "--beta", "run_config": "run config", "default": "not found: TRL's default 0.1 assumed",
               "default 0.1": "not found: TRL's default 0.1 assumed"}
    return RunHparams(beta=scan_beta, beta_source=sources.get(scan_beta_source, scan_beta_source),
                      learning_rate=float(lr) if lr is not None else None, lr_source=lr_source)
