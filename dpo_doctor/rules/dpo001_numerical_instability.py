"""DPO001 numerical-instability: NaN or Inf in the checkpoint metrics or the training log.

What it detects
    Any non-finite value (NaN, +Inf, -Inf) among a checkpoint's metrics or in a float column of the training log
    (loss, rewards/*, logps/*, grad_norm). Missing values (null) are not counted: those are metrics not measured.

Why it matters
    One NaN gradient poisons every weight it touches; the checkpoints after it score NaN log-probs and every other
    metric is meaningless. Users see it as `rewards/*` turning NaN while the logged loss reads 0.0
    (modelscope/ms-swift#5418, jingyaogong/minimind#365).

Evidence
    `nonfinite/checkpoint_metrics`: how many metric values are non-finite (threshold `max_nonfinite`);
    `nonfinite/log_values`: how many logged values are non-finite, with the first step where one appears.

Recommended fix
    Resume from the last finite checkpoint with the learning rate halved (`learning_rate_factor` 0.5), gradient
    clipping at 1.0 and bf16 (not fp16) autocast; skip batches whose loss is not finite.

References
    modelscope/ms-swift#5418 and jingyaogong/minimind#365 (rewards/logps NaN while the logged loss reads 0.0; the
    answers there: skip NaN steps, lower the LR).
    GitHub threads: owner/repo#N is https://github.com/owner/repo/issues/N.
"""

from __future__ import annotations

import math

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, Rule, RunFacts, make_facts

LOG_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
            "logps/rejected", "grad_norm")


def _bad_metrics(facts: RunFacts) -> list[tuple[str, str]]:
    return [(c.name, k) for c in facts.checkpoints for k, v in c.metrics.items()
            if isinstance(v, float) and not math.isfinite(v)]


def _first_bad_log_step(facts: RunFacts) -> int | None:
    import polars as pl

    df = facts.train_log
    floats = [n for n, t in df.schema.items() if t.is_float()]
    bad = df.filter(pl.any_horizontal([pl.col(n).is_nan() | pl.col(n).is_infinite() for n in floats]))
    return int(bad["step"].min()) if len(bad) and "step" in bad.columns else None


def check(facts: RunFacts, *, max_nonfinite: float = 0) -> Finding | None:
    bad = _bad_metrics(facts)
    log_bad = facts.log_nonfinite()
    n_log = sum(log_bad.values())
    if len(bad) + n_log <= max_nonfinite:
        return None
    first_step = _first_bad_log_step(facts) if n_log else None
    parts = []
    if bad:
        names = sorted({k for _, k in bad})
        parts.append(f"{len(bad)} non-finite metric value(s) from {bad[0][0]} on ({', '.join(names[:4])}"
                     f"{', ...' if len(names) > 4 else ''})")
    if n_log:
        parts.append(f"{n_log} NaN/Inf value(s) in the training log ({', '.join(sorted(log_bad))}) from step {first_step}")
    evidence = (Evidence("nonfinite/checkpoint_metrics", len(bad), max_nonfinite),
                Evidence("nonfinite/log_values", n_log, max_nonfinite, first_step))
    fix = Recommendation(
        "Resume from the last checkpoint before the first NaN with the learning rate halved, gradient clipping at "
        "1.0 and bf16 (not fp16) autocast, and skip batches whose loss is not finite.",
        params={"learning_rate_factor": 0.5, "max_grad_norm": 1.0, "first_bad_step": first_step})
    return Finding("numerical instability: " + "; ".join(parts) + ".", evidence, fix, bad[0][0] if bad else None)


_OK = {"rewards/margins": 0.5, "rewards/accuracies": 0.8}
EXAMPLES = (
    Example("NaN margins at the last checkpoint", make_facts(_OK, {"rewards/margins": float("nan")}), True),
    Example("NaN loss in the log only (log-only scan)",
            make_facts(log=[{"step": 10, "loss": 0.6}, {"step": 20, "loss": float("nan")}], log_only=True), True),
    Example("finite metrics, missing (None) values are fine",
            make_facts(_OK, {**_OK, "gen/kl_mean": None}, log=[{"step": 10, "loss": 0.6}]), False),
)

RULE = Rule("DPO001", "numerical-instability", "numerical_instability", "error", check, __doc__, EXAMPLES,
            reads=(), log_reads=LOG_KEYS, source="both")
