"""report.json, the canonical record of a scan: its schema, its one writer and its one reader.

`build_report(...)` assembles report.json from typed records; `write_report` writes it with the Parquet tables;
`load_report(path)` reads it back into one validated `ReportBundle` that every view, `repro`, `zoo measure`, the
terminal summary and the callback use. A report with a wrong-typed field fails here, once, with a message naming
the field (`report.json: checkpoints[2].metrics["rewards/margins"] is a string ('x'), expected a number`).

Pure I/O over finished values: nothing here runs a model or computes a metric. The schema is the typed model in
report_model.py (published as reports/report.schema.json), described in reports/README.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from dpo_doctor import __version__
from dpo_doctor.errors import UserError
from dpo_doctor.files import atomic_path, ensure_dir, write_atomic
from dpo_doctor.report_model import (SCHEMA_VERSION, CheckpointRecord, DataInfo, ReferenceInfo, Report, RunInfo,
                                     TrainLogInfo, convert)

__all__ = ["SCHEMA_VERSION", "CheckpointRecord", "DataInfo", "ReferenceInfo", "RunInfo", "TrainLogInfo",
           "ReportBundle", "build_report", "build_data_audit_report", "load_report", "read_report",
           "write_report"]
# report.json's `timings.stages` keys, in the order a scan runs them (scan/timing.py measures them).
TIMING_STAGES = ("startup", "discovery", "data", "cache", "loading", "pair_scoring", "sampling", "kl_scoring", "judging",
                 "metrics_rules", "rendering")


# The typed records live with the rest of report.json's model (report_model.py); the pipeline builds them from here.


def header() -> dict:
    return {"schema_version": SCHEMA_VERSION, "tool": {"name": "dpo-doctor", "version": __version__},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def build_report(run: RunInfo, reference: ReferenceInfo | None, data: DataInfo | None, settings: dict,
                 checkpoints: list[CheckpointRecord], metric_info: dict, train_log: TrainLogInfo | None,
                 warnings: list[str], diagnosis: dict, log_only: bool = False, timings: dict | None = None) -> dict:
    """report.json's content (without `files`, which write_report adds) from the pipeline's typed records.

    `diagnosis` is what the rules stage returns: diagnoses, verdict, summary, best_checkpoint. `timings`: wall
    seconds per stage and per model (scan/timing.py)."""
    return clean({
        **header(), "run": asdict(run), "reference": asdict(reference) if reference else None,
        "data": asdict(data) if data else None, "settings": settings,
        "checkpoints": [asdict(c) for c in checkpoints], "metric_info": metric_info,
        "train_log": asdict(train_log) if train_log else None, "warnings": list(warnings),
        **diagnosis, "log_only": bool(log_only or diagnosis.get("log_only")),
        **({"timings": timings} if timings is not None else {}),
    })


def build_data_audit_report(data: DataInfo, reference: ReferenceInfo | None, settings: dict, metric_info: dict,
                            warnings: list[str], diagnosis: dict, audit: dict) -> dict:
    """report.json of `dpo-doctor data` (kind "data_audit"): no run and no checkpoint, the data's statistics in
    data.stats, the data rules' diagnoses, and `audit` (the filter file and its counts)."""
    return clean({
        **header(), "kind": "data_audit", "data": asdict(data),
        "reference": asdict(reference) if reference else None, "settings": settings, "checkpoints": [],
        "metric_info": metric_info, "warnings": list(warnings), **diagnosis, "audit": audit, "log_only": False,
    })


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


def write_json_atomic(path: Path, obj: dict) -> None:
    write_atomic(path, json.dumps(clean(obj), indent=2, allow_nan=False))


def write_report(out_dir: Path, report: dict, tables: dict[str, pl.DataFrame | None]) -> Path:
    """Write the tables (name -> frame, None = absent) and report.json; returns report.json's path.

    Every file is written atomically; report.json goes last, so a reader never sees it point at a missing table."""
    ensure_dir(out_dir, "report folder")
    files = {}
    for name, frame in tables.items():
        if frame is None:
            files[name] = None
            continue
        with atomic_path(out_dir / f"{name}.parquet") as tmp:
            frame.write_parquet(tmp)
        files[name] = f"{name}.parquet"
    path = out_dir / "report.json"
    write_json_atomic(path, {**report, "files": files})
    return path


def record_timing(report_dir: Path, stage: str, seconds: float) -> None:
    """Add a stage that ran after report.json was written (the CLI's rendering) to its `timings`."""
    path = Path(report_dir) / "report.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    timings = doc.setdefault("timings", {"total_s": 0.0, "stages": {}})
    timings["stages"][stage] = round(timings["stages"].get(stage, 0.0) + seconds, 4)
    timings["total_s"] = round(timings["total_s"] + seconds, 4)
    write_json_atomic(path, doc)


# ---- the one reader -------------------------------------------------------------------------------------------

# The columns each view reads; a table without them is a broken scan, not silently skipped.
REQUIRED_COLUMNS = {
    "pairs": ("checkpoint", "step", "pair_id", "margin", "len_chosen", "len_rejected"),
    "pair_texts": ("pair_id", "prompt", "chosen", "rejected"),
    "samples": ("checkpoint", "prompt_id", "prompt", "text"),
    "train_log": ("step",),
    "audit_pairs": ("pair_id", "len_chosen", "len_rejected", "length_ratio"),  # data audits: one row per pair
    "points": ("run", "checkpoint", "step", "sqrt_kl"),  # compare reports: one row per run x checkpoint
}


def _kind(value: Any) -> str:
    names = {type(None): "null", bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def validate(doc: Any, text: str, path: Path) -> Report:
    """report.json's content checked against its typed model (report_model.py); the first wrong field is named in
    a UserError."""
    if not isinstance(doc, dict):
        raise UserError(f"{path} is not a dpo-doctor report (the top level is {_kind(doc)}); re-run the scan")
    if "schema_version" in doc and doc["schema_version"] != SCHEMA_VERSION:
        raise UserError(f"{path} has schema_version {doc['schema_version']!r}; this dpo-doctor reads version "
                        f"{SCHEMA_VERSION}. Re-run the scan with this version")
    if doc.get("kind") == "data_audit":  # a data audit has no run and no checkpoint, but data
        required = ("schema_version", "data")
    else:
        required = ("schema_version", "runs" if doc.get("kind") == "compare" else "run", "checkpoints")
    missing = [k for k in required if k not in doc]
    if missing:
        raise UserError(f"{path} is not a dpo-doctor report (it lacks {', '.join(missing)}); re-run the scan")
    try:
        return convert(doc, text)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}; the file was edited or written by another tool. Re-run the scan") from None


@dataclass(frozen=True)
class ReportBundle:
    """A finished report as its readers see it: the validated report.json as typed records (`doc`) and its tables
    (None where not written). Views read `doc` by attribute; `raw` is the parsed JSON, for code that writes it back
    out as it is (`dpo-doctor report --json`), never for views."""

    path: Path  # the report folder
    doc: Report
    raw: dict
    pairs: pl.DataFrame | None
    pair_texts: pl.DataFrame | None
    samples: pl.DataFrame | None
    train_log: pl.DataFrame | None
    points: pl.DataFrame | None = None  # compare reports only
    audit_pairs: pl.DataFrame | None = None  # a data audit's per-pair table

    @property
    def kind(self) -> str:
        """"scan" (one run, `dpo-doctor scan`), "compare" (a sweep, `dpo-doctor compare`) or "data_audit"
        (`dpo-doctor data`)."""
        return self.doc.kind

    @property
    def is_data_audit(self) -> bool:
        return self.kind == "data_audit"

    @property
    def checkpoints(self) -> list:
        return self.doc.checkpoints

    @property
    def diagnoses(self) -> list:
        return self.doc.diagnoses

    def worst_severity(self) -> str | None:
        from dpo_doctor.severity import SEVERITY_RANK

        return max((d.severity for d in self.diagnoses), key=SEVERITY_RANK.__getitem__, default=None)


def _table_path(root: Path, name: str) -> Path:
    """A table named by report.json, confined to the report folder (a report from elsewhere cannot read /etc)."""
    path = (root / name).resolve()
    if Path(name).is_absolute() or root.resolve() not in path.parents:
        raise UserError(f"{root / 'report.json'}: files entry {name!r} points outside the report folder; "
                        "a report may only name its own tables. Re-run the scan")
    return path


def _read_table(root: Path, kind: str, name: str | None) -> pl.DataFrame | None:
    """One Parquet table of the report, or None when the report names none or the file was removed."""
    if not name:
        return None
    path = _table_path(root, name)
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


def report_path(report_dir: Path | str) -> Path:
    report_dir = Path(report_dir)
    return report_dir / "report.json" if report_dir.is_dir() or report_dir.suffix != ".json" else report_dir


def read_report(path: Path) -> tuple[Report, dict]:
    """report.json parsed and validated (no tables): the typed report and the parsed JSON it came from."""
    if not path.is_file():
        raise UserError(f"{path} not found: pass the folder a scan wrote (dpo-doctor scan RUN --out DIR)")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UserError(f"{path} is not valid JSON ({str(exc)[:80]}); re-run the scan") from None
    doc = validate(raw, text, path)
    timings = getattr(doc, "timings", None)
    if timings is not None:
        for where, stages in [("timings.stages", timings.stages),
                              *((f"timings.checkpoints[{json.dumps(k)}]", v) for k, v in timings.checkpoints.items())]:
            unknown = [k for k in stages if k not in TIMING_STAGES]
            if unknown:
                raise UserError(f"{path}: {where} has an unknown stage {unknown[0]!r} (known: "
                                f"{', '.join(TIMING_STAGES)}); the file was edited or written by another tool. "
                                "Re-run the scan")
    return doc, raw


def load_report(report_dir: Path | str) -> ReportBundle:
    """Read REPORT_DIR/report.json (or the report.json path itself), validated, and the tables it names."""
    path = report_path(report_dir)
    doc, raw = read_report(path)
    files, root = doc.files or {}, path.parent
    tables = {kind: _read_table(root, kind, files.get(kind)) for kind in REQUIRED_COLUMNS}
    return ReportBundle(path=root, doc=doc, raw=raw, **tables)
