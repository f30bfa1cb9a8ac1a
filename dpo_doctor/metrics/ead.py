"""EAD, expectation-adjusted distinct n-grams (Liu et al., ACL 2022), as used by Kirk et al. (ICLR 2024).

    EAD_n = N_unique / ( V * [1 - ((V - 1) / V) ** C] )

N_unique distinct n-grams, C total n-grams of the set, V the vocabulary size (the tokenizer's, not GPT-2's 50257).
The denominator is the expected number of distinct tokens in C uniform draws from V, so EAD stays comparable when
length changes (plain distinct-n falls as outputs grow). Averaged over the orders n = 1..5 that have n-grams.
Low is bad (collapse).
"""

from __future__ import annotations

import math
from typing import Sequence

from dpo_doctor.metrics.distinct_n import ngram_counts

MAX_N = 5


def ead_n(seqs: Sequence[Sequence[int]], n: int, vocab_size: int) -> float | None:
    counts = ngram_counts(seqs, n)
    total = sum(counts.values())
    if not total:
        return None
    # 1 - ((V-1)/V)^C via expm1/log1p: exact for large V, where ((V-1)/V)^C rounds badly
    expected = vocab_size * -math.expm1(total * math.log1p(-1.0 / vocab_size))
    return len(counts) / expected


def ead(seqs: Sequence[Sequence[int]], vocab_size: int, max_n: int = MAX_N) -> float | None:
    """Mean of EAD_n over n = 1..max_n, skipping orders with no n-gram; None if the set is empty."""
    vals = [v for n in range(1, max_n + 1) if (v := ead_n(seqs, n, vocab_size)) is not None]
    return sum(vals) / len(vals) if vals else None
