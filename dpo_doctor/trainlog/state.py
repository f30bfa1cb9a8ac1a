"""TRL / HF Trainer `trainer_state.json`: its `log_history` list, both TRL generations.

The keys are already TRL's; eval entries carry an `eval_` prefix (`eval_<name>_` with several eval sets), stripped
here. The file is the trainer's, so it may be cut off mid-write or hand-edited: nothing in it stops a scan. An
unreadable file gives a warning and no rows; a bad entry or value is skipped with a warning.
"""

from __future__ import annotations

import json
from pathlib import Path

from dpo_doctor.discover import CHECKPOINT_RE
from dpo_doctor.trainlog.table import Problems, Unreadable

STATE_FILE = "trainer_state.json"
# TRL's keys are the table's names: nothing to map except the eval prefix.
KEYS: dict[str, str] = {}
EVAL_PREFIX = "eval_"


def find(run_dir: Path) -> Path | None:
    """The root trainer_state.json, else the latest checkpoint's (each holds history up to its own step)."""
    run_dir = Path(run_dir)
    if (run_dir / STATE_FILE).is_file():
        return run_dir / STATE_FILE
    ckpts = [(int(m.group(1)), d) for d in run_dir.iterdir() if (m := CHECKPOINT_RE.match(d.name)) and d.is_dir()]
    for _, d in sorted(ckpts, reverse=True):
        if (d / STATE_FILE).is_file():
            return d / STATE_FILE
    return None


def read(path: Path, problems: Problems) -> list[dict]:
    """Raw rows of `log_history`; raises Unreadable when the file is not JSON or has no log_history list."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise Unreadable(f"{path} is not a trainer state (a JSON object with log_history; found {type(data).__name__})")
    history = data.get("log_history")
    if not isinstance(history, list):
        raise Unreadable(f"{path} has no log_history list (found {type(history).__name__})")
    return rows(history, problems)


def rows(history: list, problems: Problems) -> list[dict]:
    """`log_history` entries -> raw rows (the file reader and the training callback share this)."""
    out = []
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            problems.add("log_history entries that are not objects", f"entry {i}: {entry!r}"[:60])
            continue
        out.append(_row(entry, problems))
    return out


def load_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise Unreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise Unreadable(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise Unreadable(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}; cut off mid-write?)") from None
    except RecursionError:
        raise Unreadable(f"{path} is nested too deeply to be a trainer log") from None


def _row(entry: dict, problems: Problems) -> dict:
    """One log entry -> raw row: split from the `eval_` prefix, prefix stripped; null values skipped (noted)."""
    split = "eval" if any(isinstance(k, str) and k.startswith(EVAL_PREFIX) for k in entry) else "train"
    row = {"step": entry.get("step"), "epoch": entry.get("epoch"), "split": split}
    for key, value in entry.items():
        name = key[len(EVAL_PREFIX):] if key.startswith(EVAL_PREFIX) else key
        if key in ("step", "epoch", "split"):
            continue
        if value is None:
            problems.add("null values", f"{key} at step {entry.get('step')!r}")
        else:
            row[KEYS.get(name, name)] = value
    return row
