"""Preference accuracies beyond TRL's.

- `accuracy/beta_free`: rho(y_w) > rho(y_l) with rho = log pi - log pi_ref (RewardBench's DPO score; equals
  rewards/accuracies for any beta > 0, and stays defined when beta is unknown).
- `accuracy/ranking`: pi(y_w) > pi(y_l) on the policy alone (Chen et al. 2024, "Preference learning algorithms do
  not learn preference rankings"); `accuracy/ranking_ref` the same for the reference.
- `accuracy/length_normalized`: per-token log-ratio of chosen > that of rejected.
Pairs with chosen == rejected are excluded.
"""

import polars as pl

from dpo_doctor.metrics.info import MetricInfo

INFO = {
    "accuracy/beta_free": MetricInfo("fraction", "low", "share of pairs whose chosen log-ratio beats the rejected's"),
    "accuracy/ranking": MetricInfo("fraction", "low", "share of pairs where the policy gives chosen the higher log-prob"),
    "accuracy/ranking_ref": MetricInfo("fraction", "low", "the same ranking accuracy for the reference"),
    "accuracy/length_normalized": MetricInfo("fraction", "low", "per-token log-ratio accuracy"),
}


def compute(df: pl.DataFrame, beta: float) -> dict[str, float]:
    kept = df.filter(~pl.col("excluded"))
    if not len(kept):
        return {k: None for k in INFO}
    rho_c = pl.col("logp_chosen") - pl.col("ref_logp_chosen")
    rho_r = pl.col("logp_rejected") - pl.col("ref_logp_rejected")
    return kept.select(
        (rho_c > rho_r).mean().alias("accuracy/beta_free"),
        (pl.col("logp_chosen") > pl.col("logp_rejected")).mean().alias("accuracy/ranking"),
        (pl.col("ref_logp_chosen") > pl.col("ref_logp_rejected")).mean().alias("accuracy/ranking_ref"),
        (rho_c / pl.col("len_chosen").clip(1) > rho_r / pl.col("len_rejected").clip(1)).mean()
        .alias("accuracy/length_normalized"),
    ).row(0, named=True)
