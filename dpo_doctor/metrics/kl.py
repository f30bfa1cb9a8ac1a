"""KL(pi || pi_ref) on the policy's own samples: the KL budget a checkpoint has spent.

`kl` per sample is the exact sum over generated tokens of the per-token KL over the full vocabulary
(Rao-Blackwellised, lowest variance); `kl_k1` and `kl_k3` are Schulman's sampled estimators of the same quantity,
kept for comparison with trainers that log them (literature section 7). Only sampled rows count: the greedy row is
not a draw from pi. Unit: nats per completion. High is bad (far from the reference: reward hacking, length
exploitation, incoherence).

`gen/kl_per_token` is the same KL per sampled token (total KL / total sampled tokens, a ratio of sums, with a
bootstrap CI over samples): a completion-level KL grows with answer length, so 30 nats is little for a 300-token
answer and a lot for a 20-token one; per token the budget means the same on short and long answers (DPO102).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats

from dpo_doctor.metrics.info import MetricInfo

INFO = {
    "gen/kl_mean": MetricInfo("nats/completion", "high",
                              "mean exact sequence KL(pi || pi_ref) on the policy's own samples (sum of per-token KL)"),
    "gen/kl_ci_low": MetricInfo("nats/completion", None, "lower end of the 95% bootstrap CI of gen/kl_mean"),
    "gen/kl_ci_high": MetricInfo("nats/completion", None, "upper end of the 95% bootstrap CI of gen/kl_mean"),
    "gen/kl_per_token": MetricInfo("nats/token", "high", "sampled KL per sampled token: sum of gen KL / sum of "
                                                         "sampled tokens (ratio of sums over the sampled rows)"),
    "gen/kl_per_token_ci_low": MetricInfo("nats/token", None, "lower end of the 95% bootstrap CI of gen/kl_per_token"),
    "gen/kl_per_token_ci_high": MetricInfo("nats/token", None, "upper end of the 95% bootstrap CI of "
                                                               "gen/kl_per_token"),
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


def ratio_ci(num: np.ndarray, den: np.ndarray, seed: int = 0,
             n_resamples: int = 2000) -> tuple[float | None, float | None]:
    """95% percentile-bootstrap CI of sum(num) / sum(den), resampling rows. None with fewer than two rows."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if len(num) < 2 or den.sum() <= 0:
        return None, None
    idx = np.random.default_rng(seed).integers(0, len(num), size=(n_resamples, len(num)))
    d = den[idx].sum(axis=1)
    r = num[idx].sum(axis=1) / np.where(d > 0, d, np.nan)
    low, high = np.nanpercentile(r, [2.5, 97.5])
    return (float(low), float(high)) if np.isfinite(low) and np.isfinite(high) else (None, None)


def kl_metrics(samples: pl.DataFrame) -> dict[str, float | None]:
    """gen/kl_* over the sampled (non-greedy) rows of one checkpoint's samples.parquet rows."""
    drawn = samples.filter(~pl.col("greedy"))
    if drawn.is_empty():
        return {k: None for k in INFO}
    kl = drawn["kl"].to_numpy()
    low, high = mean_ci(kl)
    tokens = drawn["n_tokens"].to_numpy() if "n_tokens" in drawn.columns else None
    per_token = float(kl.sum() / tokens.sum()) if tokens is not None and tokens.sum() > 0 else None
    t_low, t_high = ratio_ci(kl, tokens) if per_token is not None else (None, None)
    return {"gen/kl_mean": float(kl.mean()), "gen/kl_ci_low": low, "gen/kl_ci_high": high,
            "gen/kl_per_token": per_token, "gen/kl_per_token_ci_low": t_low, "gen/kl_per_token_ci_high": t_high,
            "gen/kl_k1_mean": float(drawn["kl_k1"].mean()), "gen/kl_k3_mean": float(drawn["kl_k3"].mean())}
