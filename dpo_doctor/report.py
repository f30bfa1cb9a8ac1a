"""Write a scan's canonical record: report.json (schema in reports/README.md) plus the Parquet tables.

Pure I/O over finished values: nothing here runs a model or computes a metric.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from dpo_doctor import __version__

SCHEMA_VERSION = 1


def clean(value: Any) -> Any:
    """JSON-safe: NaN/Inf become None (JSON has no NaN), numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def header() -> dict:
    return {"schema_version": SCHEMA_VERSION, "tool": {"name": "dpo-doctor", "version": __version__},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(clean(obj), indent=2, allow_nan=False))
    os.replace(tmp, path)


def write_report(out_dir: Path, report: dict, tables: dict[str, pl.DataFrame | None]) -> Path:
    """Write the tables (name -> frame, None = absent) and report.json; returns report.json's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, frame in tables.items():
        if frame is None:
            files[name] = None
            continue
        frame.write_parquet(out_dir / f"{name}.parquet")
        files[name] = f"{name}.parquet"
    report = {**report, "files": files}
    path = out_dir / "report.json"
    write_json_atomic(path, report)
    return path
