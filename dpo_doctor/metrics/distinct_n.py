"""distinct-n (Li et al. 2016): unique n-grams / total n-grams over a set of token sequences.

N-grams are taken inside each sequence (never across two) and pooled over the set. Biased against long outputs
and large sets (more n-grams, more repeats), so compare at equal sample counts and lengths; EAD corrects the
length part. Low is bad (repetitive, collapsed output).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence


def ngrams(seq: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(seq[i: i + n]) for i in range(len(seq) - n + 1)]


def ngram_counts(seqs: Sequence[Sequence[int]], n: int) -> Counter:
    """Pooled n-gram counts of a set of sequences."""
    counts: Counter = Counter()
    for s in seqs:
        counts.update(ngrams(s, n))
    return counts


def distinct_n(seqs: Sequence[Sequence[int]], n: int) -> float | None:
    """Unique / total n-grams of the set; None when the set has no n-gram of that order."""
    counts = ngram_counts(seqs, n)
    total = sum(counts.values())
    return len(counts) / total if total else None
