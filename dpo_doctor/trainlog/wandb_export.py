"""A W&B history export: the CSV the W&B UI downloads (`wandb_export_<date>.csv`), or `run.history()` saved as
JSON (a list of row objects) or JSON Lines.

Columns are tracker keys (`train/loss`, `train/rewards/chosen`, `train/global_step`, `_step`, ...), read through
`trackers.py`. The UI's chart export names columns `<run name> - <key>` and adds `<key>__MIN` / `__MAX` bands: the
run-name prefix is dropped and the bands are ignored. `Step` (the chart export's x column) counts as `_step`. Empty
cells are missing values; other text is skipped with a warning (`NaN`/`Infinity` text is read as the float).
"""

from __future__ import annotations

import csv
from pathlib import Path

from dpo_doctor.trainlog import trackers
from dpo_doctor.trainlog.table import Problems, Unreadable, parse_text

AUTO_GLOB = "wandb_export*.csv"  # what a run folder may hold; any .csv/.json is accepted when named with --log
# Export column -> tracker key.
KEYS = {"Step": "_step", "step": "_step"}
BAND_SUFFIXES = ("__MIN", "__MAX")
RUN_PREFIX_SEP = " - "


def find(run_dir: Path) -> Path | None:
    files = sorted(Path(run_dir).glob(AUTO_GLOB))
    return files[-1] if files else None


def read(path: Path, problems: Problems) -> list[dict]:
    path = Path(path)
    records = _csv(path) if path.suffix.lower() == ".csv" else _json(path)
    rows = []
    for record in records:
        values = {}
        for column, cell in record.items():
            key = _key(column)
            if key is not None and cell not in ("", None):
                values[key] = parse_text(cell)
        rows += trackers.split_row(values, values.get("_step"))
    return trackers.merge_rows(rows)


def _key(column) -> str | None:
    if not isinstance(column, str) or column.endswith(BAND_SUFFIXES):
        return None
    column = column.split(RUN_PREFIX_SEP, 1)[1] if RUN_PREFIX_SEP in column else column
    return KEYS.get(column, column)


def _csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error) as exc:
        raise Unreadable(f"cannot read {path} as CSV: {exc}") from None


def _json(path: Path) -> list[dict]:
    from dpo_doctor.trainlog.state import load_json

    try:
        data = load_json(path)
    except Unreadable:
        data = _json_lines(path)
    if isinstance(data, dict) and isinstance(data.get("data"), list) and isinstance(data.get("columns"), list):
        data = [dict(zip(data["columns"], r)) for r in data["data"] if isinstance(r, list)]  # pandas orient=split
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise Unreadable(f"{path} is not a W&B history export (a list of row objects)")
    return data


def _json_lines(path: Path) -> list:
    from dpo_doctor.data.jsonl import read_jsonl
    from dpo_doctor.errors import UserError

    try:
        return [line.obj for line in read_jsonl(Path(path), "W&B history export")]
    except UserError:
        raise Unreadable(f"{path} is neither JSON nor JSON Lines") from None
