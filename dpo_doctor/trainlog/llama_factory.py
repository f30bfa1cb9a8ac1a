"""LLaMA-Factory's `trainer_log.jsonl` (its LogCallback): one JSON object per logging step, a few keys re-named.

Read when a run has no trainer_state.json (which LLaMA-Factory also writes, with every TRL key). A bad line is
skipped with a warning.
"""

from __future__ import annotations

import json
from pathlib import Path

from dpo_doctor.trainlog.table import Problems, Unreadable

LOG_FILE = "trainer_log.jsonl"
# LLaMA-Factory name -> TRL name; None = bookkeeping, dropped. `loss` / `eval_loss` / `epoch` keep their names.
KEYS = {"current_steps": "step", "lr": "learning_rate", "accuracy": "rewards/accuracies",
        "total_tokens": "num_tokens", "total_steps": None, "percentage": None,
        "elapsed_time": None, "remaining_time": None, "throughput": None}


def find(run_dir: Path) -> Path | None:
    path = Path(run_dir) / LOG_FILE
    return path if path.is_file() else None


def looks_like(row: dict) -> bool:
    return "current_steps" in row


def read(path: Path, problems: Problems) -> list[dict]:
    """Raw rows, one per line that holds a JSON object."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise Unreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            problems.add("lines that are not JSON", f"line {i}")
            continue
        if isinstance(entry, dict):
            rows.append(_row(entry))
        else:
            problems.add("lines that are not JSON objects", f"line {i}")
    return rows


def _row(entry: dict) -> dict:
    mapped = {}
    for key, value in entry.items():
        new = KEYS.get(key, key)
        if new is not None:
            mapped[new] = value
    split = "eval" if any(k.startswith("eval_") for k in mapped) else "train"
    row = {"step": mapped.pop("step", None), "epoch": mapped.pop("epoch", None), "split": split}
    row.update({(k[len("eval_"):] if k.startswith("eval_") else k): v for k, v in mapped.items() if k != "split"})
    return row
