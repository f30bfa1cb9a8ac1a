"""KL(pi || pi_ref) on the policy's own samples: the KL budget a checkpoint has spent.

`kl` per sample is the exact sum over generated tokens of the per-token KL over the full vocabulary
(Rao-Blackwellised, lowest variance); `kl_k1` and `kl_k3` are Schulman's sampled estimators of the same quantity,
kept for comparison with trainers that log them (literature section 7). Only sampled rows count: the greedy row is
not a draw from pi. Unit: nats per completion. High is bad (far from the reference: reward hacking, length
exploitation, incoherence).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats

from dpo_doctor.metrics import MetricInfo

INFO = {
    "gen/kl_mean": MetricInfo("nats/completion", "high",
                              "mean exact sequence KL(pi || pi_ref) on the policy's own samples (sum of per-token KL)"),
    "gen/kl_ci_low": MetricInfo("nats/completion", None, "lower end of the 95% bootstrap CI of gen/kl_mean"),
    "gen/kl_ci_high": MetricInfo("nats/completion", None, "upper end of the 95% bootstrap CI of gen/kl_mean"),
    "gen/kl_k1_mean": MetricInfo("nats/completion", "high", "mean k1 estimate sum(log pi - log pi_ref) of the same KL"),
    "gen/kl_k3_mean": MetricInfo("nats/completion", "high", "mean k3 estimate sum((r - 1) - log r) of the same KL"),
}


def mean_ci(values: np.ndarray, seed: int = 0, n_resamples: int = 2000) -> tuple[float | None, float | None]:
    """95% bootstrap CI of the mean (BCa; percentile if BCa degenerates). None with fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return None, None
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    for method in ("BCa", "percentile"):
        res = stats.bootstrap((values,), np.mean, n_resamples=n_resamples, method=method,
                              rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            return low, high
    return None, None


def kl_metrics(samples: pl.DataFrame) -> dict[str, float | None]:
    """gen/kl_* over the sampled (non-greedy) rows of one checkpoint's samples.parquet rows."""
    drawn = samples.filter(~pl.col("greedy"))
    if drawn.is_empty():
        return {k: None for k in INFO}
    kl = drawn["kl"].to_numpy()
    low, high = mean_ci(kl)
    return {"gen/kl_mean": float(kl.mean()), "gen/kl_ci_low": low, "gen/kl_ci_high": high,
            "gen/kl_k1_mean": float(drawn["kl_k1"].mean()), "gen/kl_k3_mean": float(drawn["kl_k3"].mean())}
