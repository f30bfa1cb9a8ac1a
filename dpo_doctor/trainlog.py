"""Training curves as logged by the trainer: `trainer_state.json` `log_history`, or LLaMA-Factory's
`trainer_log.jsonl`, as one polars table.

Columns (reports/README.md, train_log.parquet): `step` (Int64), `epoch` (Float64), `split` ("train"|"eval"), then
one Float64 column per logged key, with the `eval_` prefix stripped so `rewards/margins` holds the train value on
train rows and the eval value on eval rows. The end-of-training summary row (`train_runtime`, `train_loss`, ...) and
eval timing keys are dropped: they are not curves. No torch here.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from dpo_doctor.discover import CHECKPOINT_RE, find_run_config
from dpo_doctor.errors import UserError

STATE_FILE = "trainer_state.json"
LLAMA_FACTORY_FILE = "trainer_log.jsonl"
SUMMARY_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos"}
DROPPED_KEYS = {"runtime", "samples_per_second", "steps_per_second"}  # eval timing, after the prefix is stripped
# LLaMA-Factory's LogCallback re-keys TRL's log; map back to TRL names (None = bookkeeping, dropped).
LLAMA_FACTORY_KEYS = {"current_steps": "step", "lr": "learning_rate", "accuracy": "rewards/accuracies",
                      "total_tokens": "num_tokens", "total_steps": None, "percentage": None,
                      "elapsed_time": None, "remaining_time": None}
NEW_TRL_KEYS = ("entropy", "mean_token_accuracy")  # logged by TRL >= 0.29 only


def find_state_file(run_dir: Path) -> Path | None:
    """The root trainer_state.json, else the latest checkpoint's (each holds history up to its own step)."""
    run_dir = Path(run_dir)
    if (run_dir / STATE_FILE).exists():
        return run_dir / STATE_FILE
    ckpts = [(int(m.group(1)), d) for d in run_dir.iterdir() if (m := CHECKPOINT_RE.match(d.name)) and d.is_dir()]
    for _, d in sorted(ckpts, reverse=True):
        if (d / STATE_FILE).exists():
            return d / STATE_FILE
    return None


def read_train_log(run_dir: Path) -> pl.DataFrame | None:
    """The run's training curves, or None when it logged nothing we can read.

    trainer_state.json is preferred (it has every key TRL logged); LLaMA-Factory's trainer_log.jsonl, which keeps
    only a few of them, is read when there is no trainer_state.json.
    """
    run_dir = Path(run_dir)
    state = find_state_file(run_dir) if run_dir.is_dir() else None
    if state is not None:
        return _frame(_read_state(state))
    jsonl = run_dir / LLAMA_FACTORY_FILE
    if jsonl.exists():
        return _frame([_from_llama_factory(r) for r in _read_jsonl(jsonl)])
    return None


def _read_state(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); re-copy it or delete it to scan without curves") from None
    history = data.get("log_history") if isinstance(data, dict) else None
    if not isinstance(history, list):
        raise UserError(f"{path} has no log_history list; re-copy it or delete it to scan without curves")
    return [row for row in history if isinstance(row, dict)]


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} line {i} is not valid JSON ({exc.msg}); fix or delete that line") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _from_llama_factory(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        new = LLAMA_FACTORY_KEYS.get(key, key)
        if new is not None and value is not None:
            out[new] = value
    return out


def _flatten(row: dict) -> dict | None:
    """One log entry -> {step, epoch, split, key: float}; None for the summary row."""
    if SUMMARY_KEYS & row.keys():
        return None
    split = "eval" if any(k.startswith("eval_") for k in row) else "train"
    out = {"step": row.get("step"), "epoch": row.get("epoch"), "split": split}
    for key, value in row.items():
        name = key[len("eval_"):] if key.startswith("eval_") else key
        if key in ("step", "epoch") or (split == "eval" and name in DROPPED_KEYS):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def _frame(history: list[dict]) -> pl.DataFrame | None:
    rows = [r for r in (_flatten(h) for h in history) if r is not None]
    if not rows:
        return None
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(k for k in r if k not in ("step", "epoch", "split")))
    schema = {"step": pl.Int64, "epoch": pl.Float64, "split": pl.Utf8, **{k: pl.Float64 for k in keys}}
    columns = {name: [_cell(r.get(name), dtype) for r in rows] for name, dtype in schema.items()}
    return pl.DataFrame(columns, schema=schema)


def _cell(value, dtype):
    if value is None:
        return None
    if dtype == pl.Int64:
        return int(value)
    return float(value) if dtype == pl.Float64 else value


def detect_framework(df: pl.DataFrame | None, run_dir: Path | None = None) -> str:
    """Which trainer wrote the log: "dpo-doctor" | "llama-factory" | "trl>=0.29" | "trl<=0.28" | "unknown".

    With `run_dir`, files decide first (our trainer's dpo_doctor_config.json, LLaMA-Factory's trainer_log.jsonl);
    otherwise the keys: TRL >= 0.29 logs `entropy` and `mean_token_accuracy`, older TRL only `rewards/*`.
    """
    if run_dir is not None and Path(run_dir).is_dir() and find_run_config(Path(run_dir)) is not None:
        return "dpo-doctor"
    if run_dir is not None and (Path(run_dir) / LLAMA_FACTORY_FILE).exists():
        return "llama-factory"
    if df is None:
        return "unknown"
    if any(k in df.columns for k in NEW_TRL_KEYS):
        return "trl>=0.29"
    if any(c.startswith("rewards/") for c in df.columns):
        return "trl<=0.28"
    return "unknown"
