"""Training curves as logged by the trainer, from whichever source a run has, as one polars table.

Sources, one module each, tried in this order when a run folder is scanned (the first that yields rows wins):
`state` (TRL/HF trainer_state.json, root then latest checkpoint), `llama_factory` (trainer_log.jsonl),
`tensorboard_events` (events.out.tfevents.*), `wandb_run` (wandb/run-*/run-*.wandb), `wandb_export` (W&B history
CSV/JSON), `trackio_store` (Trackio's SQLite project database). Every source maps its names to TRL's (see each
module's dict and reports/README.md); `table.py` defines the table. No torch here.

`load_train_log(run_dir, log=None)` returns a `TrainLog` (frame, source, path, warnings) and never raises for what it
finds on its own: a broken file is a warning, and the next source is tried. A path named with `log` must be readable:
an unknown kind or unreadable file is a `UserError`. `read_train_log` is the frame-only wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from dpo_doctor.errors import UserError
from dpo_doctor.trainlog import llama_factory, state, tensorboard_events, trackio_store, wandb_export, wandb_run
from dpo_doctor.trainlog.table import MissingReader, Problems, Unreadable, build_frame

STATE_FILE = state.STATE_FILE
LLAMA_FACTORY_FILE = llama_factory.LOG_FILE
NEW_TRL_KEYS = ("entropy", "mean_token_accuracy")  # logged by TRL >= 0.29 only
KINDS = ("trainer_state.json", "LLaMA-Factory trainer_log.jsonl", "a TensorBoard events.out.tfevents.* file or folder",
         "a W&B run folder or run-*.wandb file", "a W&B history export (.csv, .json)",
         "a Trackio project database (.db)")


@dataclass(frozen=True)
class TrainLog:
    """What was read: `frame` (None when nothing usable), `source` (one of SOURCES' names, None when nothing was
    found), `path` (the file or folder read), `warnings` (short, user-facing: what was skipped and why)."""

    frame: pl.DataFrame | None
    source: str | None
    path: Path | None
    warnings: tuple[str, ...] = ()


def _read_state(path, problems, run_dir):
    return state.read(path, problems)


def _read_trackio(path, problems, run_dir):
    return trackio_store.read(path, problems, run_name=Path(run_dir).resolve().name if run_dir else None)


# name -> (find in a run folder, read a found/named path). Order = auto-detection priority.
SOURCES = {
    "trainer_state": (state.find, _read_state),
    "llama_factory": (llama_factory.find, lambda p, pr, rd: llama_factory.read(p, pr)),
    "tensorboard": (tensorboard_events.find, lambda p, pr, rd: tensorboard_events.read(p, pr)),
    "wandb": (wandb_run.find, lambda p, pr, rd: wandb_run.read(p, pr)),
    "wandb_export": (wandb_export.find, lambda p, pr, rd: wandb_export.read(p, pr)),
    "trackio": (trackio_store.find, _read_trackio),
}


def load_train_log(run_dir: Path | None, log: Path | None = None) -> TrainLog:
    """The run's training curves. With `log`, that file or folder (any supported kind; UserError when it cannot be
    read); else the first source found in `run_dir`, with a warning for each broken source passed over."""
    if log is not None:
        return _load_named(Path(log), run_dir)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return TrainLog(None, None, None)
    warnings: list[str] = []
    for name, (find, _) in SOURCES.items():
        path = _safe_find(find, run_dir, warnings)
        if path is None:
            continue
        try:
            found = _load(name, path, run_dir)
        except Unreadable as exc:
            warnings.append(f"training log not read: {exc}")
            continue
        if found.frame is not None:
            return TrainLog(found.frame, name, path, tuple(warnings) + found.warnings)
        warnings += found.warnings
    return TrainLog(None, None, None, tuple(warnings))


def _safe_find(find, run_dir: Path, warnings: list[str]) -> Path | None:
    try:
        return find(run_dir)
    except OSError as exc:
        warnings.append(f"training log: cannot list {run_dir}: {exc.strerror or exc}")
        return None


def _load(name: str, path: Path, run_dir: Path | None) -> TrainLog:
    problems = Problems(path.name)
    rows = SOURCES[name][1](path, problems, run_dir)
    return TrainLog(build_frame(rows, problems), name, path, tuple(problems.warnings()))


def _load_named(log: Path, run_dir: Path | None) -> TrainLog:
    if not log.exists():
        raise UserError(f"--log {log}: no such file or folder. {_supported()}")
    name = kind_of(log)
    if name is None and log.is_dir():
        found = load_train_log(log)
        if found.frame is not None:
            return found
        raise UserError(f"--log {log}: found no training log in this folder. {_supported()}")
    if name is None:
        raise UserError(f"--log {log}: not a training log kind dpo-doctor reads. {_supported()}")
    try:
        found = _load(name, log, run_dir)
    except MissingReader as exc:
        raise UserError(f"--log {log}: {exc}") from None
    except Unreadable as exc:
        raise UserError(f"--log {log}: {exc}. {_supported()}") from None
    if found.frame is None:
        raise UserError(f"--log {log}: read as {name} but it holds no numeric curves")
    return found


def kind_of(path: Path) -> str | None:
    """The source a named file or folder is, from its name (and, for folders, its contents); None if unknown."""
    path = Path(path)
    if path.is_dir():
        if tensorboard_events.find(path) == path:
            return "tensorboard"
        return "wandb" if wandb_run.is_run(path) and wandb_run.find(path) == path else None
    name, suffix = path.name, path.suffix.lower()
    if tensorboard_events.is_event_file(path):
        return "tensorboard"
    if suffix == ".wandb":
        return "wandb"
    if suffix in trackio_store.SUFFIXES:
        return "trackio"
    if name == STATE_FILE or (suffix == ".json" and _has_log_history(path)):
        return "trainer_state"
    if name == LLAMA_FACTORY_FILE or (suffix == ".jsonl" and _first_line_is_llama_factory(path)):
        return "llama_factory"
    return "wandb_export" if suffix in (".csv", ".json", ".jsonl") else None


def _has_log_history(path: Path) -> bool:
    try:
        data = state.load_json(path)
    except Unreadable:
        return False
    return isinstance(data, dict) and "log_history" in data


def _first_line_is_llama_factory(path: Path) -> bool:
    import json

    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            row = json.loads(f.readline())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(row, dict) and llama_factory.looks_like(row)


def _supported() -> str:
    return "Supported: " + "; ".join(KINDS) + "."


def read_train_log(run_dir: Path, log: Path | None = None) -> pl.DataFrame | None:
    """The training-log table alone (None when there is none); see load_train_log for the warnings."""
    return load_train_log(run_dir, log).frame


def find_state_file(run_dir: Path) -> Path | None:
    return state.find(run_dir)


def detect_framework(df: pl.DataFrame | None, run_dir: Path | None = None) -> str:
    """Which trainer wrote the log: "dpo-doctor" | "llama-factory" | "openrlhf" | "trl>=0.29" | "trl<=0.28" |
    "unknown".

    With `run_dir`, files decide first (our trainer's dpo_doctor_config.json, LLaMA-Factory's trainer_log.jsonl);
    otherwise the keys: OpenRLHF logs `loss_mean` / `acc_mean` (mapped names aside), TRL >= 0.29 logs `entropy` and
    `mean_token_accuracy`, older TRL only `rewards/*`.
    """
    from dpo_doctor.discover import find_run_config

    if run_dir is not None and Path(run_dir).is_dir() and find_run_config(Path(run_dir)) is not None:
        return "dpo-doctor"
    if run_dir is not None and (Path(run_dir) / LLAMA_FACTORY_FILE).exists():
        return "llama-factory"
    if df is None:
        return "unknown"
    if "loss_mean" in df.columns or "acc_mean" in df.columns:
        return "openrlhf"
    if any(k in df.columns for k in NEW_TRL_KEYS):
        return "trl>=0.29"
    if any(c.startswith("rewards/") for c in df.columns):
        return "trl<=0.28"
    return "unknown"
