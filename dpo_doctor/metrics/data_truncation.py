"""Pairs cut by `max_length`: the trainer truncates prompt + response to max_length tokens (keep_start), so the end
of a long answer, often where chosen and rejected differ, is never trained on; a pair whose prompt alone fills
max_length is dropped (as TRL does).

`full_len` is the untruncated prompt + longer response in tokens (with a tokenizer) or whitespace words (without:
then a lower bound for most subword tokenizers, which split words into one or more tokens).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dpo_doctor.metrics.info import MetricInfo

INFO = {
    "data/over_max_length_frac": MetricInfo("fraction", "high", "share of pairs whose prompt + longer answer exceeds "
                                            "max_length (truncated or dropped by the trainer)"),
    "data/dropped_frac": MetricInfo("fraction", "high", "share of pairs whose prompt alone fills max_length "
                                    "(dropped by the trainer)"),
    "data/full_length_p95": MetricInfo("tokens", None, "95th percentile of prompt + longer answer, untruncated"),
}


def compute(df: pl.DataFrame, max_length: int | None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(stats, per-pair column over_max_length) from columns full_len and dropped."""
    n = df.height
    if n == 0 or df["full_len"].null_count() == n:  # the scan's pairs are already truncated: unknown here
        return {k: None for k in INFO}, {"over_max_length": np.zeros(n, bool)}
    full = df["full_len"].to_numpy().astype(np.float64)
    over = np.zeros(n, bool) if max_length is None else full > max_length
    stats = {"data/over_max_length_frac": float(over.mean()) if n else None,
             "data/dropped_frac": float(df["dropped"].mean()) if n else None,
             "data/full_length_p95": float(np.percentile(full, 95)) if n else None}
    return stats, {"over_max_length": over}
