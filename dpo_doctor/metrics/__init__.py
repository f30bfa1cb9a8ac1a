"""Per-checkpoint metrics: pure functions of the long table (polars / scipy; no model).

Each module holds a small group of metrics over one idea, with `INFO` (unit, which direction is bad, what it
measures) and `compute(df, beta) -> dict[str, float]` over the rows of one checkpoint.
"""

from __future__ import annotations

import polars as pl

from dpo_doctor.metrics.info import MetricInfo

__all__ = ["MetricInfo", "across_checkpoints", "metric_info", "pair_metric_modules", "pair_metrics"]


def pair_metric_modules():
    from dpo_doctor.metrics import accuracy, drift, heldout_loss, length_bias, margins, rewards

    return (rewards, accuracy, drift, margins, length_bias, heldout_loss)


def pair_metrics(df: pl.DataFrame, beta: float) -> dict[str, float]:
    """All pair-probe metrics of one checkpoint's rows."""
    out: dict[str, float] = {}
    for module in pair_metric_modules():
        out.update(module.compute(df, beta))
    return out


def across_checkpoints(frames: list[pl.DataFrame]) -> list[dict[str, float | None]]:
    """Pair metrics that compare a checkpoint with the earlier ones (frames in step order): one dict per frame."""
    from dpo_doctor.metrics import heldout_loss

    return heldout_loss.rise_since_best(frames)


def metric_info() -> dict[str, dict]:
    info: dict[str, dict] = {}
    for module in pair_metric_modules():
        info.update({k: v.to_dict() for k, v in module.INFO.items()})
    return info
