"""The preference data's own length skew (a property of the data, not of a checkpoint).

If chosen responses are systematically longer, a policy can win margins by growing longer (Mitchell, DPO issue
#35; Park et al. 2024). Lengths are response tokens of the reference tokenization.
"""

import polars as pl

from dpo_doctor.metrics import MetricInfo

INFO = {
    "length/chosen_longer_frac": MetricInfo("fraction", "high", "share of pairs whose chosen is longer"),
    "length/mean_ratio": MetricInfo("ratio", "high", "mean len(chosen) / mean len(rejected)"),
    "length/chosen_mean": MetricInfo("tokens", None, "mean chosen response length"),
    "length/rejected_mean": MetricInfo("tokens", None, "mean rejected response length"),
}


def compute(df: pl.DataFrame) -> dict[str, float]:
    """Over the rows of any one checkpoint (lengths do not depend on the checkpoint)."""
    kept = df.filter(~pl.col("excluded"))
    return kept.select(
        (pl.col("len_chosen") > pl.col("len_rejected")).mean().alias("length/chosen_longer_frac"),
        (pl.col("len_chosen").mean() / pl.col("len_rejected").mean().clip(1e-9)).alias("length/mean_ratio"),
        pl.col("len_chosen").mean().cast(pl.Float64).alias("length/chosen_mean"),
        pl.col("len_rejected").mean().cast(pl.Float64).alias("length/rejected_mean"),
    ).row(0, named=True)
