"""TRL's implicit-reward metrics, with TRL's exact definitions (trl/trainer/dpo_trainer.py `_compute_loss`).

reward(y) = beta * (log pi(y|x) - log pi_ref(y|x)), log-probs summed over response tokens, prompt masked.
`rewards/accuracies` uses strict >, so ties (e.g. the policy equal to the reference) count 0. Pairs whose chosen
equals rejected are excluded from the accuracy only.
"""

import polars as pl

from dpo_doctor.metrics.info import MetricInfo

INFO = {
    "rewards/chosen": MetricInfo("nats x beta", None, "mean implicit reward of chosen responses"),
    "rewards/rejected": MetricInfo("nats x beta", None, "mean implicit reward of rejected responses"),
    "rewards/margins": MetricInfo("nats x beta", "low", "mean reward(chosen) - reward(rejected)"),
    "rewards/accuracies": MetricInfo("fraction", "low", "share of pairs with reward(chosen) > reward(rejected)"),
    "logps/chosen": MetricInfo("nats", None, "mean summed policy log-prob of chosen responses"),
    "logps/rejected": MetricInfo("nats", None, "mean summed policy log-prob of rejected responses"),
}


def compute(df: pl.DataFrame, beta: float) -> dict[str, float]:
    kept = df.filter(~pl.col("excluded"))
    row = df.select(
        pl.col("reward_chosen").mean().alias("rewards/chosen"),
        pl.col("reward_rejected").mean().alias("rewards/rejected"),
        pl.col("margin").mean().alias("rewards/margins"),
        pl.col("logp_chosen").mean().alias("logps/chosen"),
        pl.col("logp_rejected").mean().alias("logps/rejected"),
    ).row(0, named=True)
    acc = kept.select((pl.col("reward_chosen") > pl.col("reward_rejected")).mean()).item() if len(kept) else None
    return {**row, "rewards/accuracies": acc}
