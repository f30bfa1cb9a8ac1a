"""LLaMA-Factory's `trainer_log.jsonl` (its LogCallback): one JSON object per logging step, a few keys re-named.

Read when a run has no trainer_state.json (which LLaMA-Factory also writes, with every TRL key). A bad line is
skipped with a warning.
"""

from __future__ import annotations

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
    from dpo_doctor.data.jsonl import read_jsonl
    from dpo_doctor.errors import UserError

    try:  # the one JSONL reader, in its lenient mode: a bad line is a warning, never the end of a scan
        lines = read_jsonl(Path(path), "training log", on_error=lambda n, why: problems.add(
            "lines that are not JSON objects" if "expected a JSON object" in why else "lines that are not JSON",
            f"line {n}"))
    except UserError as exc:  # unreadable or not UTF-8 at all
        raise Unreadable(str(exc)) from None
    return [_row(line.obj) for line in lines]


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
