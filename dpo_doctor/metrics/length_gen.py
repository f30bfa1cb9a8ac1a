"""Length of what a checkpoint generates, against the reference's own generations.

DPO outputs often run about twice as long while the data's length bias is small, and on the policy's own samples
length explains 30-46% of implicit-reward variance (Park et al. 2024; Singhal et al. 2023; literature section 2).
Lengths are answer tokens (the stopping EOS excluded) and characters. Sampled rows give the distribution (and the
Mann-Whitney test); the greedy row gives the mode-seeking length a user sees at temperature 0.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats

from dpo_doctor.metrics.info import MetricInfo

INFO = {
    "gen/length_mean": MetricInfo("tokens", None, "mean length of sampled answers"),
    "gen/length_median": MetricInfo("tokens", None, "median length of sampled answers"),
    "gen/length_chars_mean": MetricInfo("characters", None, "mean length of sampled answers in characters"),
    "gen/length_ratio": MetricInfo("ratio", "high", "mean sampled length / the reference's mean sampled length"),
    "gen/length_pvalue": MetricInfo("p-value", "low",
                                    "two-sided Mann-Whitney U p-value: sampled lengths vs the reference's"),
    "gen/truncated_frac": MetricInfo("fraction", "high", "share of sampled answers cut at max_new_tokens (no EOS): "
                                                         "when high, gen/length_ratio is a lower bound"),
    "gen/greedy_length_mean": MetricInfo("tokens", None, "mean length of greedy answers"),
    "gen/greedy_length_ratio": MetricInfo("ratio", "high", "mean greedy length / the reference's mean greedy length"),
    "gen/reward_length_spearman": MetricInfo("rho", "high",
                                             "Spearman rho of implicit reward beta*(logp - ref_logp) with length, "
                                             "on sampled answers"),
    "gen/reward_length_r2": MetricInfo("R^2", "high", "share of implicit-reward variance explained by length "
                                                      "(linear fit, sampled answers; Park et al. report 0.30-0.46)"),
}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _mean(values: pl.Series) -> float | None:
    return None if values.is_empty() else float(values.mean())


def _truncated(drawn: pl.DataFrame) -> float | None:
    """Share of rows that never reached EOS (None for samples cached before the `finished` column existed)."""
    if drawn.is_empty() or "finished" not in drawn.columns:
        return None
    return float(1.0 - drawn["finished"].cast(pl.Float64).mean())


def _pvalue(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) == 0 or len(y) == 0:
        return None
    if np.array_equal(np.sort(x), np.sort(y)):
        return 1.0
    return float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def _reward_length(reward: np.ndarray, length: np.ndarray) -> tuple[float | None, float | None]:
    """(Spearman rho, R^2 of the least-squares line reward ~ length); None where either side is constant."""
    if len(reward) < 3 or np.ptp(reward) < 1e-12 or np.ptp(length) == 0:
        return None, None
    rho = float(stats.spearmanr(reward, length).statistic)
    r2 = float(stats.linregress(length.astype(np.float64), reward).rvalue ** 2)
    return (None if math.isnan(rho) else rho), r2


def length_metrics(samples: pl.DataFrame, ref_samples: pl.DataFrame, beta: float) -> dict[str, float | None]:
    """gen/length_*, gen/greedy_length_*, gen/reward_length_* of one checkpoint vs the reference's samples."""
    drawn, ref_drawn = samples.filter(~pl.col("greedy")), ref_samples.filter(~pl.col("greedy"))
    greedy, ref_greedy = samples.filter(pl.col("greedy")), ref_samples.filter(pl.col("greedy"))
    mean, ref_mean = _mean(drawn["n_tokens"]), _mean(ref_drawn["n_tokens"])
    g_mean, ref_g_mean = _mean(greedy["n_tokens"]), _mean(ref_greedy["n_tokens"])
    reward = beta * (drawn["logp"] - drawn["ref_logp"]).to_numpy()
    rho, r2 = _reward_length(reward, drawn["n_tokens"].to_numpy())
    return {
        "gen/length_mean": mean,
        "gen/length_median": None if drawn.is_empty() else float(drawn["n_tokens"].median()),
        "gen/length_chars_mean": _mean(drawn["n_chars"]),
        "gen/length_ratio": _ratio(mean, ref_mean),
        "gen/length_pvalue": _pvalue(drawn["n_tokens"].to_numpy(), ref_drawn["n_tokens"].to_numpy()),
        "gen/truncated_frac": _truncated(drawn),
        "gen/greedy_length_mean": g_mean,
        "gen/greedy_length_ratio": _ratio(g_mean, ref_g_mean),
        "gen/reward_length_spearman": rho,
        "gen/reward_length_r2": r2,
    }
