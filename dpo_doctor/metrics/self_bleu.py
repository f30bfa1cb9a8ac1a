"""self-BLEU (Zhu et al., Texygen 2018): mean BLEU of each sequence against the other sequences of its set.

BLEU-3 as in Texygen's default (uniform weights over n = 1..3, fewer orders for candidates shorter than 3 tokens),
clipped n-gram precision against all references at once, brevity penalty from the closest reference length (ties:
the shorter), and NLTK's smoothing method 1 (a zero match count becomes 0.1). Scale 0..1; high is bad (the samples
repeat each other: collapse). Identical sequences score 1.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from dpo_doctor.metrics.distinct_n import ngrams

MAX_N = 3
EPSILON = 0.1  # NLTK SmoothingFunction().method1


def bleu(candidate: Sequence[int], references: Sequence[Sequence[int]], max_n: int = MAX_N) -> float | None:
    """Sentence BLEU of `candidate` against `references`; None for an empty candidate or no references."""
    refs = [r for r in references if len(r)]
    if not candidate or not refs:
        return None
    orders = range(1, min(max_n, len(candidate)) + 1)
    log_p = 0.0
    for n in orders:
        cand = Counter(ngrams(candidate, n))
        best: Counter = Counter()
        for r in refs:
            best |= Counter(ngrams(r, n))  # max count of each n-gram over the references
        matched = sum(min(c, best[g]) for g, c in cand.items())
        log_p += math.log((matched or EPSILON) / sum(cand.values()))
    c = len(candidate)
    r = min((abs(len(x) - c), len(x)) for x in refs)[1]
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return brevity * math.exp(log_p / len(orders))


def self_bleu(seqs: Sequence[Sequence[int]], max_n: int = MAX_N) -> float | None:
    """Mean over sequences of BLEU(seq | the others); None with fewer than two non-empty sequences."""
    seqs = [list(s) for s in seqs if len(s)]
    if len(seqs) < 2:
        return None
    scores = [bleu(s, seqs[:i] + seqs[i + 1:], max_n) for i, s in enumerate(seqs)]
    return sum(scores) / len(scores)
