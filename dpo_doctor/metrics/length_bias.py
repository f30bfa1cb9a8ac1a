"""Length bias in the learned margins: Spearman rho of margin with len(chosen) - len(rejected) (tokens).

A strong positive rho means the policy rewards length itself (Park et al. 2024, R-DPO; Singhal et al. 2023).
"""

import math

import polars as pl
from scipy import stats

from dpo_doctor.metrics.info import MetricInfo

INFO = {
    "length/margin_spearman": MetricInfo("rho", "high", "Spearman rho of margin vs len(chosen) - len(rejected)"),
    "length/margin_spearman_p": MetricInfo("p-value", None, "p-value of that correlation"),
}


def compute(df: pl.DataFrame, beta: float) -> dict[str, float]:
    kept = df.filter(~pl.col("excluded"))
    diff = (kept["len_chosen"] - kept["len_rejected"]).to_numpy()
    margin = kept["margin"].to_numpy()
    if len(kept) < 3 or diff.std() == 0 or margin.std() == 0:
        return {"length/margin_spearman": None, "length/margin_spearman_p": None}
    res = stats.spearmanr(margin, diff)
    rho, p = float(res.statistic), float(res.pvalue)
    return {"length/margin_spearman": None if math.isnan(rho) else rho, "length/margin_spearman_p": p}
