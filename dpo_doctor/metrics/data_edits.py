"""How far apart chosen and rejected are: word (or token) edit distance, and the minimal-edit pairs.

A pair whose answers differ by a word or two ("2+2=4" / "2+2=5", "No" / "Never") is where DPO's likelihood
displacement concentrates: the gradient on the shared tokens pushes the chosen answer down with the rejected one
(Pal et al. 2024, Smaug/DPOP, arXiv:2402.13228; Razin et al. 2024, arXiv:2410.08847).

Levenshtein distance over tokens (the tokenizer's ids when one is given, else the normalized words), capped: a
pair is minimal-edit when the distance is at most `max(MIN_EDITS, EDIT_FRAC x the longer answer)`. Only pairs that
can be that close are computed exactly (length gap within the cap, and a short answer or a MinHash Jaccard of at
least `CANDIDATE_JACCARD`); the DP runs in a band of the cap's width and stops once every cell is past it.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from dpo_doctor.metrics.info import MetricInfo
from dpo_doctor.metrics.minhash import PairPrints, similarity

MIN_EDITS = 1  # one token apart counts ("No" / "Never"), and 10% of a longer answer
EDIT_FRAC = 0.1
CANDIDATE_JACCARD = 0.2
SHORT = 12  # answers up to this many tokens are always candidates (their shingle sets are too small to filter on)

INFO = {
    "data/min_edit_frac": MetricInfo("fraction", "high", f"share of pairs (chosen != rejected) whose answers are at "
                                     f"most max({MIN_EDITS}, {EDIT_FRAC:g} x length) token edits apart"),
    "data/edit_distance_median": MetricInfo("edits", None, "median edit distance of the minimal-edit pairs"),
}


def cap_of(longer: int) -> int:
    return max(MIN_EDITS, math.ceil(EDIT_FRAC * longer))


def bounded_levenshtein(a: list, b: list, cap: int) -> int | None:
    """Edit distance of two sequences if it is <= cap, else None (banded DP with early exit)."""
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    j = 0
    while j < len(a) - i and j < len(b) - i and a[-1 - j] == b[-1 - j]:
        j += 1
    a, b = a[i:len(a) - j], b[i:len(b) - j]
    n, m = len(a), len(b)
    if abs(n - m) > cap:
        return None
    if n == 0 or m == 0:
        return max(n, m)
    big = cap + 1
    prev = [y if y <= cap else big for y in range(m + 1)]
    for x in range(1, n + 1):
        lo, hi = max(1, x - cap), min(m, x + cap)
        cur = [big] * (m + 1)
        cur[0] = x if x <= cap else big
        ax = a[x - 1]
        for y in range(lo, hi + 1):
            cur[y] = min(prev[y] + 1, cur[y - 1] + 1, prev[y - 1] + (ax != b[y - 1]), big)
        if min(cur[lo - 1:hi + 1]) > cap:
            return None
        prev = cur
    return prev[m] if prev[m] <= cap else None


def compute(df: pl.DataFrame, fp: PairPrints) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(stats, per-pair columns: edit_distance (-1 = farther than the cap or not close enough to compute),
    min_edit). Uses token-id columns chosen_tokens / rejected_tokens when present, else the normalized words."""
    tokens = "chosen_tokens" in df.columns
    lc = df["chosen_tokens"].list.len().to_numpy() if tokens else fp.chosen_words.lengths
    lr = df["rejected_tokens"].list.len().to_numpy() if tokens else fp.rejected_words.lengths
    longer = np.maximum(lc, lr)
    caps = np.maximum(MIN_EDITS, np.ceil(EDIT_FRAC * longer)).astype(np.int64)
    jacc = similarity(fp.chosen_sig, fp.rejected_sig)
    same = df["excluded"].to_numpy()
    candidate = (np.abs(lc - lr) <= caps) & ((longer <= SHORT) | (jacc >= CANDIDATE_JACCARD)) & ~same
    dist = np.full(len(df), -1, np.int64)
    idx = np.flatnonzero(candidate)
    ct = df["chosen_tokens"].gather(idx).to_list() if tokens else None
    rt = df["rejected_tokens"].gather(idx).to_list() if tokens else None
    for k, i in enumerate(idx):
        a = ct[k] if tokens else fp.chosen_words.of(i)
        b = rt[k] if tokens else fp.rejected_words.of(i)
        d = bounded_levenshtein(a, b, int(caps[i]))
        dist[i] = -1 if d is None else d
    minimal = dist >= 0
    kept = int((~same).sum())
    stats = {"data/min_edit_frac": float(minimal.sum() / kept) if kept else None,
             "data/edit_distance_median": float(np.median(dist[minimal])) if minimal.any() else None}
    return stats, {"edit_distance": dist, "min_edit": minimal}
