"""Repeated and contradictory pairs: exact duplicates, near duplicates and the same pair labelled both ways.

Texts are compared after normalization (`minhash.normalize`: case, punctuation and spacing ignored).
- exact duplicate: the same (prompt, chosen, rejected) as an earlier pair; every copy after the first counts.
- near duplicate: not an exact copy, but the whole pair's word 3-shingles overlap an earlier pair's with estimated
  Jaccard >= `NEAR` (MinHash, `minhash.clusters`); every member of a cluster after its first counts.
- contradiction: the same prompt with A preferred over B in one pair and B over A in another (A != B); both count.
Duplicates weigh their pairs more in every gradient and every metric; a contradiction pulls the policy both ways and
reads as label noise.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dpo_doctor.metrics.info import MetricInfo
from dpo_doctor.metrics.minhash import PairPrints, clusters, first_of, mix

NEAR = 0.8  # estimated Jaccard of word 3-shingles at which two pairs count as near duplicates

INFO = {
    "data/exact_duplicate_frac": MetricInfo("fraction", "high", "share of pairs repeating an earlier pair exactly "
                                            "(after normalizing case, punctuation and spacing)"),
    "data/near_duplicate_frac": MetricInfo("fraction", "high", "share of pairs that are near copies (MinHash "
                                           f"Jaccard >= {NEAR}) of an earlier pair, exact copies not counted"),
    "data/duplicate_frac": MetricInfo("fraction", "high", "exact + near duplicate share: pairs a deduplication drops"),
    "data/contradiction_frac": MetricInfo("fraction", "high", "share of pairs whose prompt has the same two answers "
                                          "with the opposite preference in another pair"),
}


def compute(fp: PairPrints) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(stats, per-pair columns: exact_duplicate, near_duplicate, contradiction, duplicate_of)."""
    n = len(fp.prompt)
    key = mix(mix(fp.prompt ^ np.uint64(1)) ^ fp.chosen) ^ mix(fp.rejected ^ np.uint64(2))
    exact = ~first_of(key)
    first_row = pl.DataFrame({"k": key, "i": np.arange(n)}).group_by("k").agg(pl.col("i").min().alias("f"))
    dup_of = pl.DataFrame({"k": key}).join(first_row, on="k", how="left", maintain_order="left")["f"].to_numpy()
    labels = clusters(fp.pair_sig, NEAR)
    near = ~first_of(labels) & ~exact
    reverse = mix(mix(fp.prompt ^ np.uint64(1)) ^ fp.rejected) ^ mix(fp.chosen ^ np.uint64(2))
    contradiction = pl.Series(reverse).is_in(pl.Series(key).implode()).to_numpy() & (fp.chosen != fp.rejected)
    stats = {"data/exact_duplicate_frac": float(exact.mean()) if n else None,
             "data/near_duplicate_frac": float(near.mean()) if n else None,
             "data/duplicate_frac": float((exact | near).mean()) if n else None,
             "data/contradiction_frac": float(contradiction.mean()) if n else None}
    return stats, {"exact_duplicate": exact, "near_duplicate": near, "contradiction": contradiction,
                   "duplicate_of": np.where(exact, dup_of, -1), "near_cluster": labels}
