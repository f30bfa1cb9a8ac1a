"""Chosen/rejected log-prob drift against the reference (likelihood displacement).

drift(y) = log pi(y|x) - log pi_ref(y|x), summed over response tokens (nats) and per token. Both sides falling,
chosen included, is likelihood displacement (Razin et al. 2024; Pal et al. 2024); rejected falling faster than
chosen is ordinary DPO dynamics (Rafailov et al. 2024).
"""

import polars as pl

from dpo_doctor.metrics.info import MetricInfo

INFO = {
    "ref_logps/chosen": MetricInfo("nats", None, "mean summed reference log-prob of chosen responses"),
    "ref_logps/rejected": MetricInfo("nats", None, "mean summed reference log-prob of rejected responses"),
    "drift/chosen": MetricInfo("nats", "low", "mean change of summed chosen log-prob vs the reference"),
    "drift/rejected": MetricInfo("nats", None, "mean change of summed rejected log-prob vs the reference"),
    "drift_per_token/chosen": MetricInfo("nats/token", "low", "mean per-token change of chosen log-prob"),
    "drift_per_token/rejected": MetricInfo("nats/token", None, "mean per-token change of rejected log-prob"),
    "drift/chosen_fell_frac": MetricInfo("fraction", "high", "share of pairs whose chosen log-prob fell"),
    "drift/rejected_fell_frac": MetricInfo("fraction", None, "share of pairs whose rejected log-prob fell"),
    "logratios_per_token/chosen": MetricInfo("nats/token", None, "mean over pairs of chosen log-ratio / length"),
    "logratios_per_token/rejected": MetricInfo("nats/token", None, "mean over pairs of rejected log-ratio / length"),
    "margins_per_token": MetricInfo("nats/token", "low", "mean per-token log-ratio margin (beta-free)"),
}


def compute(df: pl.DataFrame, beta: float) -> dict[str, float]:
    d_c = pl.col("logp_chosen") - pl.col("ref_logp_chosen")
    d_r = pl.col("logp_rejected") - pl.col("ref_logp_rejected")
    n_c, n_r = pl.col("len_chosen").clip(1), pl.col("len_rejected").clip(1)
    return df.select(
        pl.col("ref_logp_chosen").mean().alias("ref_logps/chosen"),
        pl.col("ref_logp_rejected").mean().alias("ref_logps/rejected"),
        d_c.mean().alias("drift/chosen"),
        d_r.mean().alias("drift/rejected"),
        (d_c.sum() / pl.col("len_chosen").sum().clip(1)).alias("drift_per_token/chosen"),
        (d_r.sum() / pl.col("len_rejected").sum().clip(1)).alias("drift_per_token/rejected"),
        (d_c < 0).mean().alias("drift/chosen_fell_frac"),
        (d_r < 0).mean().alias("drift/rejected_fell_frac"),
        (d_c / n_c).mean().alias("logratios_per_token/chosen"),
        (d_r / n_r).mean().alias("logratios_per_token/rejected"),
        (d_c / n_c - d_r / n_r).mean().alias("margins_per_token"),
    ).row(0, named=True)
