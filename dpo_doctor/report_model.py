"""report.json as typed records: what a scan, a data audit and a sweep comparison write, and what views read.

One frozen dataclass per object of the file. `report.build_report` writes them (as dicts), `report.load_report`
reads the file back into them: `bundle.doc.run.beta`, `bundle.doc.checkpoints[i].metrics["rewards/margins"]`,
`bundle.doc.best_checkpoint.name`. pydantic (v2, imported only when a report is validated or the schema printed)
checks the file against these classes strictly: a string where a number belongs, a boolean where an integer belongs
or a missing required field fails, named by its path (`checkpoints[2].metrics["rewards/margins"] is a string ('x'),
expected a number or null`). Fields an older report of schema_version 1 may lack have defaults; unknown keys are
ignored. `python -m dpo_doctor.report_model` prints the JSON Schema generated from these classes, committed as
reports/report.schema.json for other tools.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 1
Verdict = Literal["healthy", "no-failure-found", "warning", "error"]
Severity = Literal["info", "warning", "error"]
Metrics = dict[str, float | None]  # metric name -> value; null where it could not be computed (JSON has no NaN)


# ---- the records the scan pipeline hands over (report.build_report writes them as they are) --------------------


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    name: str
    beta: float
    path: str | None = None
    # "--beta", the run's file (e.g. "training_args.bin (read without unpickling)"), "default 0.1"
    beta_source: str | None = None
    loss_type: str | None = None
    framework: str | None = None


@dataclass(frozen=True, kw_only=True)
class ReferenceInfo:
    path: str
    kind: str | None = None  # "full" or "adapter"
    base: str | None = None
    source: str | None = None
    metrics: Metrics = field(default_factory=dict)
    per_prompt: dict[str, list[float | None]] = field(default_factory=dict)  # see CheckpointRecord.per_prompt


@dataclass(frozen=True, kw_only=True)
class DataInfo:
    n_pairs: int
    path: str | None = None
    format: str | None = None  # TRL's shape: standard_explicit, conversational_implicit, ...
    n_source_rows: int | None = None
    n_excluded: int = 0
    n_dropped_too_long: int = 0
    max_length: int | None = None
    stats: Metrics = field(default_factory=dict)
    data_format: str = "trl"  # the layout the file came in (trl, llamafactory-alpaca, ...); `format` is TRL's shape


@dataclass(frozen=True, kw_only=True)
class CheckpointRecord:
    name: str
    step: int
    path: str | None = None
    kind: str | None = None
    metrics: Metrics = field(default_factory=dict)
    # quality signal -> score per probe prompt id ("task/accuracy": share of its answers that pass; "judge/win_rate":
    # share of its answers the judge prefers): what paired comparisons between checkpoints read
    per_prompt: dict[str, list[float | None]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
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


# ---- what the rules stage writes ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """One metric a diagnosis cites: its value, the threshold it crossed and the reference model's own value."""

    value: float | None = None
    threshold: float | None = None
    reference_value: float | None = None


@dataclass(frozen=True, kw_only=True)
class Recommendation:
    text: str
    beta: float | None = None
    variant: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the fix's knobs (numbers, or null where not finite)


@dataclass(frozen=True, kw_only=True)
class DiagnosisRecord:
    """A finding as report.json holds it (rules.Diagnosis.to_dict)."""

    code: str
    name: str
    kind: str
    severity: Severity
    message: str
    recommendation: Recommendation
    checkpoint: str | None = None  # None: run-wide
    evidence: dict[str, Evidence] = field(default_factory=dict)
    explanation: str | None = None  # the rule's docstring (`dpo-doctor explain CODE`)


@dataclass(frozen=True, kw_only=True)
class VerdictRecord:
    verdict: str
    quality_measured: bool
    signal: str | None = None
    text: str = ""


@dataclass(frozen=True, kw_only=True)
class BestCheckpoint:
    name: str
    step: int | None = None
    reason: str = ""
    signal: str | None = None
    confidence: str | None = None  # "clear", "within noise", "low: no quality signal", ...


@dataclass(frozen=True, kw_only=True)
class MetricNote:
    """metric_info's entry for one metric (metrics.MetricInfo as written)."""

    unit: str = ""
    bad: str | None = None  # "low" | "high" | None
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class Tool:
    name: str = "dpo-doctor"
    version: str = "?"


@dataclass(frozen=True, kw_only=True)
class Timings:
    """Wall seconds: in total, per stage (report.TIMING_STAGES), and per model for the model stages."""

    total_s: float
    stages: dict[str, float]
    checkpoints: dict[str, dict[str, float]] = field(default_factory=dict)


# ---- the three kinds of report ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ScanReport:
    """`dpo-doctor scan` (no `kind`, or "scan"): one run, its checkpoints, the diagnoses."""

    schema_version: int
    run: RunInfo
    checkpoints: list[CheckpointRecord]
    kind: Literal["scan"] = "scan"
    tool: Tool = field(default_factory=Tool)
    created: str = ""
    reference: ReferenceInfo | None = None
    data: DataInfo | None = None
    settings: dict[str, Any] | None = None  # the ScanConfig the scan ran with (and which quality grading ran)
    metric_info: dict[str, MetricNote] = field(default_factory=dict)
    train_log: TrainLogInfo | None = None
    warnings: list[str] = field(default_factory=list)
    diagnoses: list[DiagnosisRecord] = field(default_factory=list)
    verdict: Verdict = "no-failure-found"  # healthy only when answer quality was measured and held
    verdict_record: VerdictRecord | None = None
    summary: str | None = None
    log_only: bool = False
    best_checkpoint: BestCheckpoint | None = None
    files: dict[str, str | None] | None = None  # table name -> file in the report folder (None: not written)
    timings: Timings | None = None


@dataclass(frozen=True, kw_only=True)
class AuditFilter:
    file: str = "filter_ids.jsonl"
    n_pairs: int = 0  # pairs with at least one reason to drop them
    by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AuditInfo:
    filter: AuditFilter = field(default_factory=AuditFilter)
    length_unit: str = "tokens"  # or "words" without a tokenizer


@dataclass(frozen=True, kw_only=True)
class DataAuditReport:
    """`dpo-doctor data` (kind "data_audit"): the pairs' statistics (data.stats) and the data rules' diagnoses."""

    schema_version: int
    kind: Literal["data_audit"]
    data: DataInfo
    tool: Tool = field(default_factory=Tool)
    created: str = ""
    reference: ReferenceInfo | None = None
    settings: dict[str, Any] | None = None  # length_unit, tokenizer, wall_s
    checkpoints: list[CheckpointRecord] = field(default_factory=list)  # always empty
    metric_info: dict[str, MetricNote] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    diagnoses: list[DiagnosisRecord] = field(default_factory=list)
    verdict: Verdict = "healthy"
    verdict_record: VerdictRecord | None = None
    summary: str | None = None
    log_only: bool = False
    best_checkpoint: BestCheckpoint | None = None
    audit: AuditInfo | None = None
    files: dict[str, str | None] | None = None
    timings: Timings | None = None


@dataclass(frozen=True, kw_only=True)
class CompareCheckpoint:
    name: str
    step: int
    metrics: Metrics = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CompareRun:
    """One run of a sweep: its settings as found, its scan's verdict and findings, its checkpoints' key metrics."""

    name: str
    path: str
    report: str  # its own scan report, relative to the compare folder
    beta: float | None
    beta_source: str
    learning_rate: float | None
    lr_source: str
    verdict: Verdict
    diagnoses: list[DiagnosisRecord]
    checkpoints: list[CompareCheckpoint]
    loss_type: str | None = None
    framework: str | None = None
    summary: str | None = None
    best_checkpoint: BestCheckpoint | None = None
    train_log: str | None = None  # the log's source, None without one


@dataclass(frozen=True, kw_only=True)
class FrontierPoint:
    run: str | None  # None: the reference (KL 0)
    checkpoint: str
    sqrt_kl: float
    y: float | None


@dataclass(frozen=True, kw_only=True)
class CompareBest:
    """The checkpoint to ship across the sweep, and how sure the choice is."""

    run: str
    checkpoint: str
    reason: str
    step: int | None = None
    confidence: str | None = None
    signal: str | None = None
    quality: float | None = None
    p_best: float | None = None
    diff_vs_runner_up: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    tied: list[str] = field(default_factory=list)  # "run/checkpoint" the choice cannot tell apart from it


@dataclass(frozen=True, kw_only=True)
class NextRun:
    """The next run's settings, from where the frontier peaks."""

    text: str
    beta: float | None = None
    learning_rate: float | None = None
    beta_fit: float | None = None
    learning_rate_fit: float | None = None
    steps: int | None = None
    from_run: str | None = None
    beta_source: str | None = None
    lr_source: str | None = None


@dataclass(frozen=True, kw_only=True)
class CompareQuality:
    signal: str | None  # None: the y axis is held-out implicit-reward accuracy (a proxy)
    label: str
    source: str | None = None
    reference: float | None = None


@dataclass(frozen=True, kw_only=True)
class CompareReference:
    path: str
    metrics: Metrics = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CompareData:
    n_pairs: int
    path: str | None = None
    format: str | None = None


@dataclass(frozen=True, kw_only=True)
class CompareReport:
    """`dpo-doctor compare` (kind "compare"): several runs of one reference, judged together."""

    schema_version: int
    kind: Literal["compare"]
    name: str
    reference: CompareReference
    data: CompareData
    quality: CompareQuality
    runs: list[CompareRun]
    frontier: list[FrontierPoint]
    best: CompareBest | None
    recommendation: NextRun
    tool: Tool = field(default_factory=Tool)
    created: str = ""
    settings: dict[str, Any] | None = None  # the one ScanConfig every run was scanned with
    warnings: list[str] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # always empty
    diagnoses: list[DiagnosisRecord] = field(default_factory=list)  # always empty (each run has its own)
    files: dict[str, str | None] | None = None


Report = ScanReport | DataAuditReport | CompareReport
KINDS: dict[str, type] = {"scan": ScanReport, "data_audit": DataAuditReport, "compare": CompareReport}


# ---- validation: pydantic, with its errors said the way every dpo-doctor error is ---------------------------------


@functools.cache
def _adapter(cls: type):
    import pydantic

    return pydantic.TypeAdapter(cls)


def model_of(doc: dict) -> type:
    """The report class a parsed report.json is checked against (absent `kind`: a scan)."""
    return KINDS.get(doc.get("kind"), ScanReport)


def convert(doc: dict, text: str) -> Report:
    """report.json's text as its typed report; raises ValueError naming the first wrong field."""
    import pydantic

    cls = model_of(doc)
    try:
        return _adapter(cls).validate_json(text, strict=True)
    except pydantic.ValidationError as exc:
        raise ValueError(describe(exc.errors()[0], cls, doc)) from None


def _strip(tp: Any) -> tuple[Any, bool]:
    """(the type without `| None`, whether None is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), len(args) < len(typing.get_args(tp))
    return tp, False


def _expected(tp: Any) -> str:
    tp, nullable = _strip(tp)
    origin = typing.get_origin(tp)
    if origin is Literal:
        text = " or ".join(repr(a) for a in typing.get_args(tp))
    elif tp is Any:
        text = "any value"
    else:
        text = {float: "a number", int: "an integer", str: "a string", bool: "true or false", list: "a list",
                dict: "an object"}.get(origin or tp, "an object")
    return text + (" or null" if nullable else "")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[__name__]))


def _child(value: Any, part: Any) -> Any:
    if isinstance(value, dict):
        return value.get(part)
    if isinstance(value, list) and isinstance(part, int) and part < len(value):
        return value[part]
    return None


def describe(error: dict, cls: type, doc: Any) -> str:
    """A pydantic error as `checkpoints[0].metrics["rewards/margins"] is a string ('x'), expected a number or null`:
    the error's location walked through the classes, so a dataclass field reads `.name` and a map key `["key"]`."""
    where, tp, value = "", cls, doc
    for part in error["loc"]:
        inner, _ = _strip(tp)
        origin = typing.get_origin(inner)
        if dataclasses.is_dataclass(inner):
            where += f".{part}" if where else str(part)
            tp = _hints(inner).get(part, Any)
        elif origin is list:
            where += f"[{part}]"
            tp = typing.get_args(inner)[0]
        elif origin is dict:
            where += f"[{json.dumps(part)}]"
            tp = typing.get_args(inner)[1]
        else:  # a tag pydantic adds inside a union: not a place in the file
            continue
        value = _child(value, part)
    if error["type"] == "missing":
        return f"{where} is missing"
    shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
    return f"{where} is {_kind(value)} ({shown}), expected {_expected(tp)}"


def json_schema() -> dict:
    """The JSON Schema of report.json, generated from the classes above: one of a scan, a data audit, a compare."""
    import pydantic

    schema = pydantic.TypeAdapter(Report).json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": f"generated with pydantic {'.'.join(pydantic.VERSION.split('.')[:2])}",
            "title": f"dpo-doctor report.json (schema_version {SCHEMA_VERSION})",
            "description": "What `dpo-doctor scan` (no kind, or \"scan\"), `dpo-doctor data` (kind \"data_audit\") and "
                           "`dpo-doctor compare` (kind \"compare\") write. Generated by `python -m "
                           "dpo_doctor.report_model` from dpo_doctor/report_model.py; unknown keys are allowed.",
            **schema}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())
