"""The records rules read and write: frozen facts about a run in, frozen diagnoses out.

`RunFacts` is everything a rule may look at: per-checkpoint metrics (ordered by step), the reference's own
generation metrics, the data's length statistics, beta, the loss type and the training curves. Rules never see raw
rows. A rule's `check` returns a `Finding` (message, evidence and recommendation kept in separate fields); the
registry adds the rule's identity and docstring to make a `Diagnosis`, whose `to_dict()` is the report.json entry.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

import polars as pl

from dpo_doctor.severity import SEVERITIES, SEVERITY_RANK  # noqa: F401 (re-exported)

KINDS = ("length_exploitation", "likelihood_displacement", "over_optimization", "overfitting", "mode_collapse",
         "label_noise", "underfitting", "no_learning", "reference_mismatch", "distribution_shift",
         "numerical_instability", "degeneration", "capability_regression",
         # the data audit (`dpo-doctor data`, DPO3xx): risks in the pairs before any training
         "length_bias", "likelihood_displacement_risk", "mode_collapse_risk", "duplicates", "contradictions",
         "truncation", "reference_disfavours", "degenerate_pairs")
# What a recommendation may name: TRL's loss_type names where TRL has the loss (sigmoid = DPO, ipo, hinge, robust,
# sigmoid_norm), else one descriptive spelling; the built-in trainer's loss names are the same strings.
VARIANTS = ("sigmoid", "ipo", "hinge", "robust", "sigmoid_norm", "simpo", "r_dpo", "ld_dpo", "dpop", "rpo", "cdpo",
            "f_dpo", "tr_dpo", "beta_dpo", "online_dpo", "kto", "orpo")
SOURCES = ("metrics", "log", "both", "data")  # what a rule reads: checkpoint metrics, the training log, either, or
# the data audit's statistics alone (DPO3xx: run by `dpo-doctor data`, not by a scan)
LN2 = math.log(2.0)  # DPO loss when margins are 0: -log sigma(0)
# The per-pair loss of each TRL loss_type (trl 1.16 DPOTrainer) when the policy equals its reference (every
# log-ratio 0), as a function of beta: what a training loss pinned by "no learning" sits at. sft (an NLL) and
# exo_pair (depends on label_smoothing) have none. TRL logs rewards/* as beta x summed log-ratio for every type.
ZERO_MARGIN_LOSS = {
    "sigmoid": lambda b: LN2, "sigmoid_norm": lambda b: LN2, "robust": lambda b: LN2, "aot": lambda b: LN2,
    "aot_unpaired": lambda b: LN2, "aot_pair": lambda b: LN2,
    "hinge": lambda b: 1.0,  # relu(1 - 0)
    "ipo": lambda b: 1.0 / (4 * b * b),  # (0 - 1/(2 beta))^2
    "nca_pair": lambda b: 2 * LN2, "bco_pair": lambda b: 2 * LN2,
    "sppo_hard": lambda b: 0.5 / (b * b),  # (0 - 0.5/beta)^2 + (0 + 0.5/beta)^2
    "apo_zero": lambda b: 1.0, "apo_down": lambda b: 1.0,  # (1 - 1/2) + 1/2; 1/2 + (1 - 1/2)
    "discopop": lambda b: 0.5 * LN2 + 0.5,  # logistic x (1 - sigma(0)) + exp(0) x sigma(0)
}


def zero_margin_loss(loss_type: str | None, beta: float) -> float | None:
    """The training loss of a policy equal to its reference under `loss_type` (TRL's names; several joined by "+",
    weighted 1 each as TRL does without loss_weights); None when it is not defined or not known. An unknown run
    (loss_type None) is taken as TRL's default, sigmoid."""
    parts = (loss_type or "sigmoid").split("+")
    if not beta > 0 or any(p not in ZERO_MARGIN_LOSS for p in parts):
        return None
    return sum(ZERO_MARGIN_LOSS[p](beta) for p in parts)


def finite(value) -> bool:
    """A usable number: int/float, not bool, not NaN/Inf."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value) -> str:
    """Numbers in messages: 3 significant digits."""
    return f"{value:.3g}" if finite(value) else str(value)


def _json_number(value):
    """JSON has no NaN/Inf: keep finite numbers, turn the rest into None."""
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    return float(value) if finite(value) else None


@dataclass(frozen=True)
class CheckpointFacts:
    name: str
    step: int
    metrics: Mapping[str, float]
    per_prompt: Mapping[str, tuple] = field(default_factory=dict)  # signal -> score per probe prompt id (or None)

    def scores(self, key: str) -> tuple | None:
        """Per-prompt scores of a quality signal (`task/accuracy`, `judge/win_rate`), None when not recorded."""
        found = self.per_prompt.get(key)
        return tuple(found) if found else None

    def get(self, key: str) -> float | None:
        """The metric if it is a finite number, else None (absent, null, NaN)."""
        value = self.metrics.get(key)
        return float(value) if finite(value) else None


@dataclass(frozen=True)
class RunFacts:
    checkpoints: tuple[CheckpointFacts, ...]
    reference_metrics: Mapping[str, float] = field(default_factory=dict)
    data_stats: Mapping[str, float] = field(default_factory=dict)
    beta: float = 0.1
    loss_type: str | None = None
    train_log: pl.DataFrame | None = None
    log_only: bool = False
    n_pairs: int | None = None  # held-out pairs scored per checkpoint (sample size of every pair metric)
    data_is_eval: bool = False  # the scanned pairs are the trainer's own eval set (settings.data_is_eval)
    reference_per_prompt: Mapping[str, tuple] = field(default_factory=dict)  # as CheckpointFacts.per_prompt
    quality: Mapping[str, object] = field(default_factory=dict)  # settings["quality"]: what answer grading ran
    data_audit: bool = False  # a pre-training data audit: only the data rules (source "data") run

    @property
    def loss_at_zero_margin(self) -> float | None:
        """What the run's training loss reads when the policy equals its reference (ln 2 for sigmoid DPO)."""
        return zero_margin_loss(self.loss_type, self.beta)

    @property
    def trained(self) -> tuple[CheckpointFacts, ...]:
        """Checkpoints after at least one optimizer step (step 0 is the untouched start)."""
        return tuple(c for c in self.checkpoints if c.step > 0)

    @property
    def last(self) -> CheckpointFacts | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def accuracy_step(self, tol: float, min_pairs: float = 2) -> float:
        """The smallest change of a held-out accuracy worth reading as a change: `tol`, and at least `min_pairs`
        pairs of the held-out set (on 8 pairs one pair is 0.125; one pair changing side is noise)."""
        return max(tol, min_pairs / self.n_pairs) if self.n_pairs else tol

    def series(self, key: str) -> list[tuple[CheckpointFacts, float]]:
        """(checkpoint, value) for every checkpoint where `key` is a finite number, in step order."""
        return [(c, v) for c in self.checkpoints if (v := c.get(key)) is not None]

    def ref(self, key: str) -> float | None:
        value = self.reference_metrics.get(key)
        return float(value) if finite(value) else None

    def data(self, key: str) -> float | None:
        value = self.data_stats.get(key)
        return float(value) if finite(value) else None

    def log(self, key: str, split: str = "train") -> list[tuple[int, float]]:
        """(step, value) rows of one logged curve with a finite value, in step order; [] if not logged."""
        df = self.train_log
        if df is None or key not in df.columns or "step" not in df.columns:
            return []
        if "split" in df.columns:
            df = df.filter(pl.col("split") == split)
        rows = df.select("step", key).sort("step").rows()
        return [(int(s), float(v)) for s, v in rows if s is not None and finite(v)]

    def log_nonfinite(self) -> dict[str, int]:
        """Per logged float column, how many values are NaN or Inf (nulls are just 'not logged')."""
        df = self.train_log
        if df is None:
            return {}
        out = {}
        for name, dtype in df.schema.items():
            if dtype.is_float():
                n = df.select((pl.col(name).is_nan() | pl.col(name).is_infinite()).sum()).item()
                if n:
                    out[name] = int(n)
        return out


@dataclass(frozen=True)
class Evidence:
    """One measured number behind a diagnosis, with the threshold it crossed and a comparison value."""
    metric: str
    value: float | None
    threshold: float | None = None
    reference_value: float | None = None

    def to_dict(self) -> dict:
        return {"value": _json_number(self.value), "threshold": _json_number(self.threshold),
                "reference_value": _json_number(self.reference_value)}


@dataclass(frozen=True)
class Recommendation:
    """What to change: a beta (from a documented calculation), a variant, its parameters, one sentence."""
    text: str
    beta: float | None = None
    variant: str | None = None
    params: Mapping[str, float | str | None] = field(default_factory=dict)

    def __post_init__(self):
        if self.variant is not None and self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; use one of {VARIANTS}")

    def to_dict(self) -> dict:
        return {"beta": _json_number(self.beta), "variant": self.variant,
                "params": {k: _json_number(v) for k, v in self.params.items()}, "text": self.text}


@dataclass(frozen=True)
class Finding:
    """What a rule's check returns when it fires: the problem (message) apart from the fix (recommendation)."""
    message: str
    evidence: tuple[Evidence, ...]
    recommendation: Recommendation
    checkpoint: str | None = None
    explained_by: tuple[str, ...] = ()  # kinds that, when also found, are the cause: list this finding after them
    kind: str | None = None  # the failure kind when the rule names the mechanism per run (DPO111); else the rule's


@dataclass(frozen=True)
class Diagnosis:
    code: str
    name: str
    kind: str
    severity: str
    checkpoint: str | None
    message: str
    evidence: tuple[Evidence, ...]
    recommendation: Recommendation
    explanation: str
    source: str = "metrics"  # which rule family made it: "metrics", "log" or "both" (not in to_dict)
    explained_by: tuple[str, ...] = ()  # see Finding.explained_by (ordering only, not in to_dict)

    def to_dict(self) -> dict:
        return {"code": self.code, "name": self.name, "kind": self.kind, "severity": self.severity,
                "checkpoint": self.checkpoint, "message": self.message,
                "evidence": {e.metric: e.to_dict() for e in self.evidence},
                "recommendation": self.recommendation.to_dict(), "explanation": self.explanation}


@dataclass(frozen=True)
class Example:
    """An executable example: these facts must (or must not) make the rule fire; optionally the advice it gives."""
    title: str
    facts: RunFacts
    fires: bool
    beta: float | None = None  # expected recommendation beta (checked to 3 significant digits)
    variant: str | None = None  # expected recommendation variant


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    kind: str
    severity: str
    check: Callable[..., Finding | None]
    doc: str
    examples: tuple[Example, ...] = ()
    reads: tuple[str, ...] = ()  # per-checkpoint / reference / data metrics it reads (must exist in the scan)
    log_reads: tuple[str, ...] = ()  # train_log columns it reads
    source: str = "metrics"

    def __post_init__(self):
        if self.kind not in KINDS or self.severity not in SEVERITIES or self.source not in SOURCES:
            raise ValueError(f"{self.code}: bad kind/severity/source {self.kind}/{self.severity}/{self.source}")

    @property
    def params(self) -> dict[str, float]:
        """The overridable thresholds: the check's keyword-only parameters and their defaults."""
        sig = inspect.signature(self.check)
        return {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}

    def run(self, facts: RunFacts, overrides: Mapping[str, float] | None = None) -> Diagnosis | None:
        found = self.check(facts, **dict(overrides or {}))
        if found is None:
            return None
        kind = found.kind or self.kind
        if kind not in KINDS:
            raise ValueError(f"{self.code}: unknown kind {kind}")
        return Diagnosis(self.code, self.name, kind, self.severity, found.checkpoint, found.message,
                         found.evidence, found.recommendation, self.doc, self.source,
                         tuple(found.explained_by))


def make_facts(*metrics: Mapping[str, float], steps: tuple[int, ...] | None = None,
               reference: Mapping[str, float] | None = None, data: Mapping[str, float] | None = None,
               beta: float = 0.1, loss_type: str | None = "sigmoid", log: list[dict] | None = None,
               log_only: bool = False, n_pairs: int | None = None, data_is_eval: bool = False,
               per_prompt: list[Mapping[str, list]] | None = None,
               reference_per_prompt: Mapping[str, list] | None = None) -> RunFacts:
    """Facts for examples and tests: one metrics dict per checkpoint (steps 100, 200, ... unless given); `log` is
    a list of train_log rows (dicts with step, split and logged keys); `per_prompt` one {signal: scores} per
    checkpoint."""
    steps = steps or tuple(100 * (i + 1) for i in range(len(metrics)))
    scores = per_prompt or [{}] * len(metrics)
    ckpts = tuple(CheckpointFacts(f"checkpoint-{s}", s, MappingProxyType(dict(m)),
                                  MappingProxyType({k: tuple(v) for k, v in p.items()}))
                  for s, m, p in zip(steps, metrics, scores))
    frame = None
    if log:
        keys = sorted({k for row in log for k in row} - {"step", "split"})
        frame = pl.DataFrame({"step": [r["step"] for r in log], "split": [r.get("split", "train") for r in log],
                              **{k: [None if r.get(k) is None else float(r[k]) for r in log] for k in keys}},
                             schema_overrides={k: pl.Float64 for k in keys})
    return RunFacts(ckpts, MappingProxyType(dict(reference or {})), MappingProxyType(dict(data or {})), beta,
                    loss_type, frame, log_only, n_pairs, data_is_eval=data_is_eval,
                    reference_per_prompt=MappingProxyType({k: tuple(v) for k, v in (reference_per_prompt or {}).items()}))
