"""The preference data's own length skew (a property of the data, not of a checkpoint).

If chosen responses are systematically longer, a policy can win margins by growing longer (Mitchell, DPO issue
#35; Park et al. 2024). `dpo-doctor scan` computes these on the response tokens of the reference tokenization, and
`dpo-doctor data` with the same function (tokens with a tokenizer, whitespace words without), so the two agree.
Pairs with chosen == rejected (`excluded`) are left out.
"""

import polars as pl

from dpo_doctor.metrics.info import MetricInfo

INFO = {
    "length/chosen_longer_frac": MetricInfo("fraction", "high", "share of pairs whose chosen is longer"),
    "length/mean_ratio": MetricInfo("ratio", "high", "mean len(chosen) / mean len(rejected)"),
    "length/median_ratio": MetricInfo("ratio", "high", "median over pairs of len(chosen) / len(rejected)"),
    "length/chosen_mean": MetricInfo("tokens", None, "mean chosen response length"),
    "length/rejected_mean": MetricInfo("tokens", None, "mean rejected response length"),
    "length/longer_wins_accuracy": MetricInfo(
        "fraction", "high", "accuracy of the preference 'the longer answer wins' on these labels (ties count half): "
        "what a pure length preference reaches"),
    "length/longer_wins_margin": MetricInfo(
        "log ratio", "high", "mean log(len(chosen) / len(rejected)): the mean margin of the reward r(y) = log |y|"),
}


def compute(df: pl.DataFrame) -> dict[str, float]:
    """Over rows with len_chosen, len_rejected and excluded (any one checkpoint of the scan's long table, or the
    audit's pair table)."""
    kept = df.filter(~pl.col("excluded"))
    c, r = pl.col("len_chosen").cast(pl.Float64), pl.col("len_rejected").cast(pl.Float64)
    return kept.select(
        (c > r).mean().alias("length/chosen_longer_frac"),
        (c.mean() / r.mean().clip(1e-9)).alias("length/mean_ratio"),
        (c.clip(1) / r.clip(1)).median().alias("length/median_ratio"),
        c.mean().alias("length/chosen_mean"),
        r.mean().alias("length/rejected_mean"),
        ((c > r).cast(pl.Float64) + 0.5 * (c == r).cast(pl.Float64)).mean().alias("length/longer_wins_accuracy"),
        (c.clip(1).log() - r.clip(1).log()).mean().alias("length/longer_wins_margin"),
    ).row(0, named=True)
