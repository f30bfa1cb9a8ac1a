"""The long table: one row per (checkpoint, pair) with log-probs, reference log-probs, lengths, rewards, margin.

A pure function of the engine's arrays; everything after it (metrics, rules, views) reads this table.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dpo_doctor.engine.pairs import PairScores

COLUMNS = ("checkpoint", "step", "pair_id", "logp_chosen", "logp_rejected", "ref_logp_chosen", "ref_logp_rejected",
           "len_chosen", "len_rejected", "reward_chosen", "reward_rejected", "margin", "excluded")


def checkpoint_table(name: str, step: int, pair_ids: tuple[int, ...], policy: PairScores, ref: PairScores,
                     beta: float, excluded: tuple[bool, ...]) -> pl.DataFrame:
    """Rows of one checkpoint. reward = beta * (log pi - log pi_ref), summed over response tokens (TRL)."""
    df = pl.DataFrame({
        "checkpoint": [name] * len(pair_ids),
        "step": np.full(len(pair_ids), step, dtype=np.int64),
        "pair_id": np.asarray(pair_ids, dtype=np.int64),
        "logp_chosen": policy.logp_chosen, "logp_rejected": policy.logp_rejected,
        "ref_logp_chosen": ref.logp_chosen, "ref_logp_rejected": ref.logp_rejected,
        "len_chosen": ref.len_chosen, "len_rejected": ref.len_rejected,
        "excluded": np.asarray(excluded, dtype=bool),
    })
    return df.with_columns(
        reward_chosen=beta * (pl.col("logp_chosen") - pl.col("ref_logp_chosen")),
        reward_rejected=beta * (pl.col("logp_rejected") - pl.col("ref_logp_rejected")),
    ).with_columns(margin=pl.col("reward_chosen") - pl.col("reward_rejected")).select(COLUMNS)
