"""Statistics of counted outcomes (k of n samples): the Wilson interval and a one-sided Fisher exact test.

Shared by the metrics that count samples (task accuracy, judge win rate, degenerate answers) and the rules that
compare such counts with the reference's: at 32-128 probe samples one or two samples flipping is noise, so a
share is read with its interval and a difference with its p-value, never as a bare number.
"""

from __future__ import annotations

import math

from scipy import stats

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the share k / n (Wilson 1927): stays inside [0, 1] and is sensible at k = 0 or n.
    k may be fractional (a tie counted as half a win). (nan, nan) when n = 0."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def fisher_greater(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided Fisher exact p-value that the share k1/n1 is larger than k2/n2 (1.0 when either n is 0)."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    table = [[int(k1), int(n1 - k1)], [int(k2), int(n2 - k2)]]
    return float(stats.fisher_exact(table, alternative="greater").pvalue)
