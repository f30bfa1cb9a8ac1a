"""Paired bootstrap over prompts: which of several checkpoints scored on the SAME prompts is best, and how sure.

Input: a (K candidates, P prompts) matrix of per-prompt quality (a prompt's share of right answers, or its judge
win rate), every row on the same prompts in the same order. Prompts are the independent units, so each bootstrap
replicate resamples prompt indices once and applies them to every row (the pairing): a prompt that is hard for
one checkpoint is hard for all, and that shared difficulty cancels in the differences, which independent
per-checkpoint intervals cannot do (two overlapping Wilson intervals can hide a difference that every prompt shows).

Returns, for the best row (highest mean; ties: the lower index, so callers order candidates by preference):
`p_best` (share of replicates in which each row has the highest mean, ties split), and the mean difference to the
runner-up with its 95% percentile interval. "clear" when that interval lies above 0, else "within noise". Units:
the quality's (fractions); higher is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 2000


@dataclass(frozen=True)
class PairedChoice:
    best: int  # row index of the best candidate
    runner_up: int | None
    means: tuple[float, ...]
    p_best: tuple[float, ...]  # per row: share of bootstrap replicates where it is the best
    diff: float | None  # mean(best) - mean(runner-up), over the same prompts
    diff_low: float | None  # 95% percentile interval of the paired difference
    diff_high: float | None
    tied: tuple[int, ...]  # rows whose paired difference to the best has an interval containing 0 (best included)

    @property
    def confidence(self) -> str | None:
        if self.diff_low is None:
            return None
        return "clear" if self.diff_low > 0 else "within noise"


def _interval(diffs: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def paired_choice(scores: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> PairedChoice:
    """The best row of `scores` (K x P, per-prompt quality, no NaN) by mean, with paired-bootstrap confidence."""
    scores = np.asarray(scores, dtype=np.float64)  # (K, P)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"scores must be a non-empty (candidates, prompts) matrix, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN/Inf: every candidate must be scored on every prompt")
    k, p = scores.shape
    means = scores.mean(axis=1)  # (K,)
    best = int(np.flatnonzero(means == means.max())[0])
    if k == 1:
        return PairedChoice(best, None, tuple(means.tolist()), (1.0,), None, None, None, (best,))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, p, size=(n_boot, p))  # (B, P): one resample of prompts per replicate, shared by all rows
    boot = scores[:, idx].mean(axis=2).T  # (B, K)
    top = boot == boot.max(axis=1, keepdims=True)  # (B, K), ties split below
    p_best = (top / top.sum(axis=1, keepdims=True)).mean(axis=0)
    order = np.argsort(-means, kind="stable")
    runner = int(next(i for i in order if i != best))
    diffs = boot[:, best][:, None] - boot  # (B, K): paired differences to the best
    tied = tuple(int(j) for j in range(k) if j == best or _interval(diffs[:, j])[0] <= 0)
    low, high = _interval(diffs[:, runner])
    return PairedChoice(best, runner, tuple(means.tolist()), tuple(p_best.tolist()),
                        float(means[best] - means[runner]), low, high, tied)
