"""report.json, the canonical record of a scan: its schema, its one writer and its one reader.

`build_report(...)` assembles report.json from typed records; `write_report` writes it with the Parquet tables;
`load_report(path)` reads it back into one validated `ReportBundle` that every view, `repro`, `zoo measure`, the
terminal summary and the callback use. A report with a wrong-typed field fails here, once, with a message naming
the field (`report.json: checkpoints[2].metrics["rewards/margins"] is a string ('x'), expected a number`).

Pure I/O over finished values: nothing here runs a model or computes a metric. Schema: reports/README.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from dpo_doctor import __version__
from dpo_doctor.errors import UserError
from dpo_doctor.files import atomic_path, ensure_dir, write_atomic

SCHEMA_VERSION = 1
# report.json's `timings.stages` keys, in the order a scan runs them (scan/timing.py measures them).
TIMING_STAGES = ("startup", "discovery", "data", "cache", "loading", "pair_scoring", "sampling", "kl_scoring", "judging",
                 "metrics_rules", "rendering")


# ---- typed records (what the pipeline hands over) --------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: str
    beta: float
    beta_source: str  # "--beta", the run's file (e.g. "training_args.bin (read without unpickling)"), "default 0.1"
    loss_type: str | None
    framework: str


@dataclass(frozen=True)
class ReferenceInfo:
    path: str
    kind: str  # "full" or "adapter"
    base: str | None
    source: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    per_prompt: dict[str, list[float | None]] = field(default_factory=dict)  # see CheckpointRecord.per_prompt


@dataclass(frozen=True)
class DataInfo:
    path: str
    format: str
    n_pairs: int
    n_source_rows: int
    n_excluded: int
    n_dropped_too_long: int
    max_length: int | None
    stats: dict[str, float | None] = field(default_factory=dict)
    data_format: str = "trl"  # the layout the file came in (trl, llamafactory-alpaca, ...); `format` is TRL's shape


@dataclass(frozen=True)
class CheckpointRecord:
    name: str
    step: int
    path: str
    kind: str
    metrics: dict[str, float | None]
    # quality signal -> score per probe prompt id ("task/accuracy": share of its answers that pass; "judge/win_rate":
    # share of its answers the judge prefers): what paired comparisons between checkpoints read
    per_prompt: dict[str, list[float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainLogInfo:
    n_rows: int
    keys: list[str]
    source: str | None  # trainer_state, llama_factory, tensorboard, wandb, wandb_export, trackio
    path: str | None
    file: str = "train_log.parquet"

    @classmethod
    def of(cls, log) -> "TrainLogInfo | None":
        """From a `trainlog.TrainLog` (None when no log was found)."""
        if log.frame is None:
            return None
        return cls(n_rows=log.frame.height, keys=[c for c in log.frame.columns if c not in ("step", "epoch", "split")],
                   source=log.source, path=str(log.path) if log.path else None)


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


class _Num:
    """A JSON number (not a bool); None allowed where a metric could not be computed."""


NUM, NUM_OR_NONE, STR_OR_NONE, INT_OR_NONE = _Num(), (_Num(), None), (str, None), (int, None)
_EVIDENCE = {"*": {"value?": NUM_OR_NONE, "threshold?": NUM_OR_NONE, "reference_value?": NUM_OR_NONE}}
_DIAGNOSIS = {"code": str, "name": str, "kind": str, "severity": ("info", "warning", "error"),
              "checkpoint?": STR_OR_NONE, "message": str, "evidence?": _EVIDENCE,
              "recommendation": {"text": str, "beta?": NUM_OR_NONE, "variant?": STR_OR_NONE, "params?": dict},
              "explanation?": STR_OR_NONE}
SCHEMA = {
    "schema_version": int,
    "kind?": ("scan", "data_audit"),  # absent: a scan
    "audit?": (None, dict),
    "run": {"name": str, "path?": str, "beta": NUM, "beta_source?": STR_OR_NONE, "loss_type?": STR_OR_NONE,
            "framework?": STR_OR_NONE},
    "reference?": (None, {"path": str, "kind?": str, "base?": STR_OR_NONE, "metrics?": {"*": NUM_OR_NONE},
                          "per_prompt?": {"*": [NUM_OR_NONE]}}),
    "data?": (None, {"path?": str, "format?": str, "data_format?": str, "n_pairs": int, "stats?": {"*": NUM_OR_NONE}}),
    "settings?": (dict, None),
    "checkpoints": [{"name": str, "step": int, "path?": str, "kind?": str, "metrics?": {"*": NUM_OR_NONE},
                     "per_prompt?": {"*": [NUM_OR_NONE]}}],
    "metric_info?": (dict, None),
    "warnings?": [str],
    "diagnoses?": [_DIAGNOSIS],
    "verdict?": ("healthy", "no-failure-found", "warning", "error"),
    "verdict_record?": (None, {"verdict": str, "quality_measured": bool, "signal?": STR_OR_NONE, "text?": str}),
    "summary?": STR_OR_NONE,
    "log_only?": bool,
    "best_checkpoint?": (None, {"name": str, "step?": int, "reason?": str, "signal?": STR_OR_NONE,
                                 "confidence?": STR_OR_NONE}),
    "files?": (None, {"*": STR_OR_NONE}),
    "timings?": {"total_s": NUM, "stages": {"*": NUM}, "checkpoints?": {"*": {"*": NUM}}},
}
# A compare report (`dpo-doctor compare`): several runs of one reference judged together.
_BEST = {"run": str, "checkpoint": str, "step?": INT_OR_NONE, "reason": str, "confidence?": STR_OR_NONE,
         "signal?": STR_OR_NONE, "quality?": NUM_OR_NONE, "p_best?": NUM_OR_NONE}
COMPARE_SCHEMA = {
    "schema_version": int,
    "kind": ("compare",),
    "name": str,
    "reference": {"path": str, "metrics?": {"*": NUM_OR_NONE}},
    "data": {"path?": STR_OR_NONE, "n_pairs": int},
    "quality": {"signal": STR_OR_NONE, "label": str, "source?": STR_OR_NONE, "reference?": NUM_OR_NONE},
    "settings?": (dict, None),
    "runs": [{"name": str, "path": str, "report": str, "beta": NUM_OR_NONE, "beta_source": str,
              "learning_rate": NUM_OR_NONE, "lr_source": str, "verdict": ("healthy", "no-failure-found", "warning", "error"),
              "diagnoses": [_DIAGNOSIS],
              "checkpoints": [{"name": str, "step": int, "metrics": {"*": NUM_OR_NONE}}]}],
    "frontier": [{"run": STR_OR_NONE, "checkpoint": str, "sqrt_kl": NUM, "y": NUM_OR_NONE}],
    "best": (None, _BEST),
    "recommendation": {"beta": NUM_OR_NONE, "learning_rate": NUM_OR_NONE, "text": str},
    "warnings?": [str],
    "checkpoints": [dict],
    "files?": (None, {"*": STR_OR_NONE}),
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _expected(spec: Any) -> str:
    if isinstance(spec, tuple):
        return " or ".join(_expected(s) for s in spec)
    if isinstance(spec, _Num):
        return "a number"
    if spec is None:
        return "null"
    if isinstance(spec, str):
        return repr(spec)
    if isinstance(spec, list):
        return "a list"
    if isinstance(spec, dict) or spec is dict:
        return "an object"
    return {int: "an integer", str: "a string", bool: "true or false", float: "a number"}.get(spec, str(spec))


def _matches(value: Any, spec: Any) -> bool:
    """Shallow type match (containers are checked element-wise by `_check`)."""
    if isinstance(spec, tuple):
        return any(_matches(value, s) for s in spec)
    if isinstance(spec, _Num):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec is None:
        return value is None
    if isinstance(spec, str):
        return value == spec
    if isinstance(spec, list):
        return isinstance(value, list)
    if isinstance(spec, dict) or spec is dict:
        return isinstance(value, dict)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, spec)


def _check(value: Any, spec: Any, where: str) -> None:
    if not _matches(value, spec):
        shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
        raise ValueError(f"{where} is {_kind(value)} ({shown}), expected {_expected(spec)}")
    if isinstance(spec, tuple):  # descend into the container alternative that matched
        spec = next((s for s in spec if _matches(value, s) and isinstance(s, (list, dict))), None)
    if isinstance(spec, list):
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}[{i}]")
    elif isinstance(spec, dict):
        for key, sub in spec.items():
            if key == "*":
                for k, v in value.items():
                    _check(v, sub, f"{where}[{json.dumps(k)}]")
                continue
            name, optional = key.rstrip("?"), key.endswith("?")
            if name not in value:
                if not optional:
                    raise ValueError(f"{where}.{name} is missing")
                continue
            _check(value[name], sub, f"{where}.{name}")


def validate(doc: Any, path: Path) -> dict:
    """report.json's content checked against SCHEMA; the first wrong field is named in a UserError."""
    if not isinstance(doc, dict):
        raise UserError(f"{path} is not a dpo-doctor report (the top level is {_kind(doc)}); re-run the scan")
    if "schema_version" in doc and doc["schema_version"] != SCHEMA_VERSION:
        raise UserError(f"{path} has schema_version {doc['schema_version']!r}; this dpo-doctor reads version "
                        f"{SCHEMA_VERSION}. Re-run the scan with this version")
    schema = COMPARE_SCHEMA if doc.get("kind") == "compare" else SCHEMA
    if doc.get("kind") == "data_audit":  # a data audit has no run and no checkpoint, but data
        required = ("schema_version", "data")
    else:
        required = ("schema_version", "runs" if schema is COMPARE_SCHEMA else "run", "checkpoints")
    missing = [k for k in required if k not in doc]
    if missing:
        raise UserError(f"{path} is not a dpo-doctor report (it lacks {', '.join(missing)}); re-run the scan")
    try:
        for key, spec in schema.items():
            name = key.rstrip("?")
            if name in doc:
                _check(doc[name], spec, name)
            elif not key.endswith("?") and name in required:
                raise ValueError(f"{name} is missing")
    except ValueError as exc:
        raise UserError(f"{path}: {exc}; the file was edited or written by another tool. Re-run the scan") from None
    return doc


@dataclass(frozen=True)
class ReportBundle:
    """A scan as its readers see it: the validated report.json content and its tables (None where not written)."""

    path: Path  # the report folder
    report: dict
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
        kind = self.report.get("kind")
        return kind if kind in ("compare", "data_audit") else "scan"

    @property
    def is_data_audit(self) -> bool:
        return self.kind == "data_audit"

    @property
    def checkpoints(self) -> list[dict]:
        return self.report["checkpoints"]

    @property
    def diagnoses(self) -> list[dict]:
        return self.report["diagnoses"]

    def worst_severity(self) -> str | None:
        from dpo_doctor.severity import SEVERITY_RANK

        return max((d["severity"] for d in self.diagnoses), key=SEVERITY_RANK.__getitem__, default=None)


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


def read_report_json(path: Path) -> dict:
    """report.json parsed and validated (no tables)."""
    if not path.is_file():
        raise UserError(f"{path} not found: pass the folder a scan wrote (dpo-doctor scan RUN --out DIR)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UserError(f"{path} is not valid JSON ({str(exc)[:80]}); re-run the scan") from None
    doc = validate(doc, path)
    timings = doc.get("timings") or {}
    for where, stages in [("timings.stages", timings.get("stages") or {}),
                          *((f"timings.checkpoints[{json.dumps(k)}]", v) for k, v in (timings.get("checkpoints") or {}).items())]:
        unknown = [k for k in stages if k not in TIMING_STAGES]
        if unknown:
            raise UserError(f"{path}: {where} has an unknown stage {unknown[0]!r} (known: {', '.join(TIMING_STAGES)}); "
                            "the file was edited or written by another tool. Re-run the scan")
    doc["checkpoints"] = doc.get("checkpoints") or []
    for c in doc["checkpoints"]:
        c.setdefault("metrics", {})
    doc["diagnoses"] = doc.get("diagnoses") or []
    doc["warnings"] = doc.get("warnings") or []
    doc["metric_info"] = doc.get("metric_info") or {}
    return doc


def load_report(report_dir: Path | str) -> ReportBundle:
    """Read REPORT_DIR/report.json (or the report.json path itself), validated, and the tables it names."""
    path = report_path(report_dir)
    report = read_report_json(path)
    files, root = report.get("files") or {}, path.parent
    tables = {kind: _read_table(root, kind, files.get(kind)) for kind in REQUIRED_COLUMNS}
    return ReportBundle(path=root, report=report, **tables)
