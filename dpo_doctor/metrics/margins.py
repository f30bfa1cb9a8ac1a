"""The distribution of beta-scaled margins: quantiles, spread, and the share of misranked pairs.

A persistent tail of negative margins that never flips is the signature of label noise (Mitchell 2023 cDPO;
Chowdhury et al. 2024); a very wide spread mixes easy and hard pairs (Wu et al. 2024, beta-DPO).
"""

import polars as pl

from dpo_doctor.metrics.info import MetricInfo

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
INFO = {
    **{f"margins/q{round(q * 100):02d}": MetricInfo("nats x beta", None, f"{q:.0%} quantile of margins")
       for q in QUANTILES},
    "margins/std": MetricInfo("nats x beta", None, "standard deviation of margins"),
    "margins/negative_frac": MetricInfo("fraction", "high", "share of pairs with a negative margin"),
}


def compute(df: pl.DataFrame, beta: float) -> dict[str, float]:
    m = df.filter(~pl.col("excluded"))["margin"]
    out = {f"margins/q{round(q * 100):02d}": m.quantile(q, "linear") for q in QUANTILES}
    out["margins/std"] = m.std() if len(m) > 1 else None
    out["margins/negative_frac"] = (m < 0).mean() if len(m) else None
    return out
