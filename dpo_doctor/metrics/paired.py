"""Paired comparison of two models on the same prompts: the exact two-sided sign test over prompts.

Every checkpoint (and the reference) answers the same probe prompts, so comparing two of them is a paired question:
on how many prompts did A score higher than B, and how many lower? Under "no difference" each untied prompt is a
fair coin, so the count of prompts where A is ahead is Binomial(n_untied, 1/2); the two-sided p-value is exact
(no normal approximation, no seed). Prompts are the units because the samples of one prompt are correlated; a
prompt's score is the share of its answers that pass (task) or win (judge), so ties (equal shares) carry no
information and are dropped, as the sign test prescribes.

Why not overlapping intervals of two independent proportions: the prompt-to-prompt spread (easy and hard prompts)
is shared by both models and cancels in a paired test but widens both independent intervals. 24 prompts x 5 samples,
0.542 vs 0.317 with A ahead on 12 prompts and behind on 1: the independent Wilson intervals overlap, the sign test
gives p = 2 x P(Binomial(13, 1/2) <= 1) = 2 x 14 / 8192 = 0.0034.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

ALPHA = 0.05  # two-sided significance level of every quality comparison


@dataclass(frozen=True)
class Paired:
    """A paired comparison of A against B over the prompts both scored."""
    diff: float  # mean per-prompt score of A minus B (fraction)
    ahead: int  # prompts where A scored higher
    behind: int  # prompts where A scored lower
    n: int  # prompts both scored (ties included)
    p_value: float  # exact two-sided sign test

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA

    def describe(self) -> str:
        return (f"A ahead on {self.ahead} and behind on {self.behind} of {self.n} prompts, sign test "
                f"p={self.p_value:.2g}")


def sign_test_p(ahead: int, behind: int) -> float:
    """Exact two-sided p-value of `ahead` successes in `ahead + behind` fair coin flips (1.0 when none)."""
    n = ahead + behind
    if n == 0:
        return 1.0
    k = min(ahead, behind)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(a: Sequence[float | None], b: Sequence[float | None]) -> Paired | None:
    """Sign test of per-prompt scores `a[i]` against `b[i]` (index = prompt id; None = not scored); None when no
    prompt has both."""
    both = [(x, y) for x, y in zip(a, b) if _num(x) and _num(y)]
    if not both:
        return None
    ahead = sum(1 for x, y in both if x - y > 1e-12)
    behind = sum(1 for x, y in both if y - x > 1e-12)
    diff = sum(x - y for x, y in both) / len(both)
    return Paired(diff, ahead, behind, len(both), sign_test_p(ahead, behind))


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
