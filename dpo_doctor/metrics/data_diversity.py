"""Diversity of the chosen answers: one canned answer preferred for every prompt is a mode collapse waiting to happen.

- `data/chosen_top_prompt_share`: the chosen answers are clustered (MinHash, estimated Jaccard >= `NEAR` of word
  3-shingles, after normalization); for the largest cluster by prompts, the share of distinct prompts whose chosen
  answer falls in it. A canned reply chosen for every prompt gives 1.0; a healthy set gives about 1 / prompts.
- `data/chosen_mode_share`: share of pairs whose (normalized) chosen answer is the single most common one.
- `data/chosen_distinct_2` / `data/rejected_distinct_2`: distinct word bigrams / all word bigrams of the chosen
  (rejected) answers, pooled (Li et al. 2016). Pooled distinct-n depends on corpus size, so read chosen against
  rejected (same pairs, similar sizes), not against another data set.
- `data/per_prompt_chosen_distinct`: over prompts with two or more pairs, the mean share of distinct chosen answers.
DPO learns whatever the chosen answers share; when they share the whole answer the policy converges on it.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dpo_doctor.metrics.info import MetricInfo
from dpo_doctor.metrics.minhash import PairPrints, Words, clusters, distinct, mix

NEAR = 0.8

INFO = {
    "data/chosen_top_prompt_share": MetricInfo("fraction", "high", "share of prompts whose chosen answer is (nearly) "
                                               "the one most widely shared chosen answer"),
    "data/chosen_mode_share": MetricInfo("fraction", "high", "share of pairs whose chosen answer is the single most "
                                         "common one (normalized text)"),
    "data/chosen_distinct_2": MetricInfo("fraction", "low", "distinct word bigrams / all bigrams of chosen answers"),
    "data/rejected_distinct_2": MetricInfo("fraction", None, "distinct word bigrams / all bigrams of rejected answers"),
    "data/per_prompt_chosen_distinct": MetricInfo("fraction", "low", "mean share of distinct chosen answers among a "
                                                  "prompt's pairs (prompts with 2+ pairs)"),
    "data/n_prompts": MetricInfo("count", None, "distinct prompts (normalized)"),
}


def distinct_2(w: Words) -> float | None:
    """Distinct word bigrams over all bigrams, pooled over texts (bigrams never cross texts)."""
    n = len(w.hashes)
    if n < 2:
        return None
    doc = np.repeat(np.arange(len(w.lengths)), w.lengths)
    inside = np.concatenate([doc[1:] == doc[:-1], [False]])
    bigrams = mix(w.hashes[:-1] ^ mix(w.hashes[1:] ^ np.uint64(3)))[inside[:-1]]
    return float(len(distinct(bigrams)) / len(bigrams)) if len(bigrams) else None


def compute(fp: PairPrints) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(stats, per-pair columns: chosen_cluster, chosen_cluster_prompts = distinct prompts sharing that cluster)."""
    n = len(fp.prompt)
    labels = clusters(fp.chosen_sig, NEAR)
    frame = pl.DataFrame({"cl": labels, "p": fp.prompt, "c": fp.chosen})
    per_cluster = frame.group_by("cl").agg(pl.col("p").n_unique().alias("prompts"))
    prompts_of = frame.join(per_cluster, on="cl", how="left", maintain_order="left")["prompts"].to_numpy()
    n_prompts = frame["p"].n_unique()
    per_prompt = frame.group_by("p").agg(pl.len().alias("n"), pl.col("c").n_unique().alias("k")).filter(pl.col("n") > 1)
    stats = {
        "data/chosen_top_prompt_share": float(per_cluster["prompts"].max() / n_prompts) if n else None,
        "data/chosen_mode_share": float(frame["c"].value_counts()["count"].max() / n) if n else None,
        "data/chosen_distinct_2": distinct_2(fp.chosen_words),
        "data/rejected_distinct_2": distinct_2(fp.rejected_words),
        "data/per_prompt_chosen_distinct": float((per_prompt["k"] / per_prompt["n"]).mean())
        if per_prompt.height else None,
        "data/n_prompts": float(n_prompts),
    }
    return stats, {"chosen_cluster": labels, "chosen_cluster_prompts": prompts_of}
