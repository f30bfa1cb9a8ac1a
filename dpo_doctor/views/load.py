"""Read a finished scan (report.json + its Parquet tables) into one frozen `ReportBundle` for the views.

Views read only what a scan wrote: no model, no torch, no recomputed metric. A missing or malformed report.json
is a user error naming the file; a missing optional table (samples, train log) is simply None, so every view can
say "not recorded" instead of crashing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from dpo_doctor.errors import UserError

REQUIRED_KEYS = ("schema_version", "run", "checkpoints")
# The columns each view reads; a table without them is treated as a broken scan, not silently skipped.
REQUIRED_COLUMNS = {
    "pairs": ("checkpoint", "step", "pair_id", "margin", "len_chosen", "len_rejected"),
    "pair_texts": ("pair_id", "prompt", "chosen", "rejected"),
    "samples": ("checkpoint", "prompt_id", "prompt", "text"),
    "train_log": ("step",),
}


@dataclass(frozen=True)
class ReportBundle:
    """A scan as the views see it: the report dict and its tables (None when the scan did not write one)."""

    path: Path
    report: dict
    pairs: pl.DataFrame | None
    pair_texts: pl.DataFrame | None
    samples: pl.DataFrame | None
    train_log: pl.DataFrame | None


def _read_table(root: Path, kind: str, name: str | None) -> pl.DataFrame | None:
    """One Parquet table of the report, or None when the report names none or the file was removed."""
    if not name:
        return None
    path = root / name
    if not path.is_file():
        return None
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for a corrupt file
        raise UserError(f"{path} is not a readable Parquet file ({type(exc).__name__}); re-run the scan") from None
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in frame.columns]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)} (see reports/README.md); re-run the scan")
    return frame


def _read_json(path: Path) -> dict:
    """report.json as a dict, checked for the keys every view needs."""
    if not path.is_file():
        raise UserError(f"{path} not found: pass the directory a scan wrote (dpo-doctor scan RUN --out DIR)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); re-run the scan") from None
    if not isinstance(report, dict) or any(k not in report for k in REQUIRED_KEYS):
        raise UserError(f"{path} is not a dpo-doctor report (needs {', '.join(REQUIRED_KEYS)}); re-run the scan")
    if report["schema_version"] != 1:
        raise UserError(f"{path} has schema_version {report['schema_version']!r}; this dpo-doctor reads version 1. "
                        "Re-run the scan with this version.")
    for i, c in enumerate(report["checkpoints"]):
        if not isinstance(c, dict) or "name" not in c or "step" not in c:
            raise UserError(f"{path}: checkpoints[{i}] needs a name and a step; re-run the scan")
        c.setdefault("metrics", {})
    report["diagnoses"] = report.get("diagnoses") or []
    return report


def load_report(report_dir: Path | str) -> ReportBundle:
    """Read REPORT_DIR/report.json (or the report.json path itself) and the tables it names."""
    report_dir = Path(report_dir)
    path = report_dir / "report.json" if report_dir.is_dir() or report_dir.suffix != ".json" else report_dir
    report = _read_json(path)
    files, root = report.get("files") or {}, path.parent
    tables = {kind: _read_table(root, kind, files.get(kind)) for kind in REQUIRED_COLUMNS}
    return ReportBundle(path=root, report=report, **tables)
