"""Trackio's local store: one SQLite database per project, `<project>.db` in `$TRACKIO_DIR` (default
`$HF_HOME/trackio`, i.e. ~/.cache/huggingface/trackio), read with the stdlib's sqlite3 (trackio itself is not needed).

Layout read (trackio 0.43, `sqlite_storage.py`): table `metrics(id, run_id, timestamp, run_name, step, metrics)`,
one row per `trackio.log` call, `metrics` a JSON object whose non-finite floats are the strings "NaN", "Infinity",
"-Infinity"; older stores have no `run_id`. Keys are tracker keys (HF's TrackioCallback sends `train/loss`,
`eval/loss`, `train/global_step`), read through `trackers.py`. A project holds many runs: the one whose name is the
run folder's name is read, else the most recently logged, with a warning naming the others.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from dpo_doctor.trainlog import trackers
from dpo_doctor.trainlog.table import Problems, Unreadable, parse_text

SUFFIXES = (".db", ".sqlite", ".sqlite3")
TABLE = "metrics"


def find(run_dir: Path) -> Path | None:
    """A Trackio project database inside run_dir or run_dir/trackio (the default store lives outside runs: name it
    with --log ~/.cache/huggingface/trackio/<project>.db)."""
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir / "trackio"):
        for file in sorted(folder.glob("*.db")) if folder.is_dir() else []:
            if is_store(file):
                return file
    return None


def is_store(path: Path) -> bool:
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES or not path.is_file():
        return False
    try:
        with _connect(path) as conn:
            return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (TABLE,)).fetchone() \
                is not None
    except sqlite3.Error:
        return False


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)


def read(path: Path, problems: Problems, run_name: str | None = None) -> list[dict]:
    """Raw rows of one run of the project database at `path`."""
    try:
        conn = _connect(path)
        try:
            return _read(conn, path, problems, run_name)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise Unreadable(f"cannot read {path} as a Trackio store: {exc}") from None


def _read(conn, path: Path, problems: Problems, run_name: str | None) -> list[dict]:
    runs = [r[0] for r in conn.execute(f"SELECT run_name, MAX(id) AS last FROM {TABLE} GROUP BY run_name "
                                       "ORDER BY last DESC")]
    if not runs:
        raise Unreadable(f"{path}: the Trackio store has no logged metrics")
    run = run_name if run_name in runs else runs[0]
    if len(runs) > 1:
        problems.add("other runs in the same Trackio project", ", ".join(r for r in runs if r != run)[:80])
    rows = []
    for step, text in conn.execute(f"SELECT step, metrics FROM {TABLE} WHERE run_name = ? ORDER BY id", (run,)):
        try:
            values = json.loads(text)
        except (json.JSONDecodeError, TypeError, RecursionError):
            problems.add("rows whose metrics are not JSON", f"step {step}")
            continue
        if isinstance(values, dict):
            rows += trackers.split_row({k: parse_text(v) for k, v in values.items()}, step)
    return trackers.merge_rows(rows)
