"""Read a finished scan (report.json + Parquet tables) for the views. No torch, no model, no recomputed metric."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from dpo_doctor.errors import UserError


@dataclass(frozen=True)
class ReportBundle:
    """A scan as the views see it: the report dict and its tables (None when absent)."""

    path: Path
    report: dict
    pairs: pl.DataFrame | None
    pair_texts: pl.DataFrame | None
    samples: pl.DataFrame | None
    train_log: pl.DataFrame | None


def _table(report_dir: Path, name: str | None) -> pl.DataFrame | None:
    if not name:
        return None
    path = report_dir / name
    if not path.exists():
        return None
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for a corrupt file
        raise UserError(f"{path} is not a readable Parquet file ({type(exc).__name__}); re-run the scan") from None


def load_bundle(report_dir: Path) -> ReportBundle:
    report_dir = Path(report_dir)
    path = report_dir / "report.json" if report_dir.is_dir() else report_dir
    if not path.exists():
        raise UserError(f"{path} not found: pass the directory a scan wrote (dpo-doctor scan ... --out DIR)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); re-run the scan") from None
    if not isinstance(report, dict) or "checkpoints" not in report or "schema_version" not in report:
        raise UserError(f"{path} is not a dpo-doctor report (no schema_version/checkpoints)")
    files = report.get("files") or {}
    root = path.parent
    return ReportBundle(path=root, report=report, pairs=_table(root, files.get("pairs")),
                        pair_texts=_table(root, files.get("pair_texts")), samples=_table(root, files.get("samples")),
                        train_log=_table(root, files.get("train_log")))
