"""Judge win rate (`judge/*`): how often a judge scores the checkpoint's answer above the reference's.

Optional (`--judge SPEC`: a reward model or a user callable, dpo_doctor/engine/judge.py). Answers are paired by
(prompt_id, sample_idx): the checkpoint's k-th answer to a prompt against the reference's k-th answer to it (same
seed, same settings), scored independently; a win counts 1, a tie (scores within 1e-9) a half. The rate is the mean
over pairs with a Wilson 95% interval. 0.5 means no better than the reference; low is bad. The judge's own biases
(length above all: Dubois et al. 2024) pass into the rate, so read it next to gen/length_ratio.
"""

from __future__ import annotations

from typing import Sequence

import polars as pl

from dpo_doctor.metrics.info import MetricInfo
from dpo_doctor.metrics.proportions import wilson

TIE = 1e-9

INFO = {
    "judge/win_rate": MetricInfo("fraction", "low", "share of answer pairs the judge scores above the reference's "
                                                    "(ties count half; 0.5 = as good as the reference)"),
    "judge/win_rate_low": MetricInfo("fraction", "low", "lower end of the Wilson 95% interval of judge/win_rate"),
    "judge/win_rate_high": MetricInfo("fraction", "low", "upper end of the Wilson 95% interval of judge/win_rate"),
    "judge/n": MetricInfo("pairs", None, "answer pairs judged"),
}


def paired_texts(samples: pl.DataFrame, ref_samples: pl.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """(prompts, checkpoint texts, reference texts) of the answers both tables have, matched on prompt and sample."""
    both = samples.select("prompt_id", "sample_idx", "prompt", "text").join(
        ref_samples.select("prompt_id", "sample_idx", pl.col("text").alias("ref_text")),
        on=["prompt_id", "sample_idx"]).sort("prompt_id", "sample_idx")
    return both["prompt"].to_list(), both["text"].to_list(), both["ref_text"].to_list()


def win_rate(policy: Sequence[float], reference: Sequence[float]) -> tuple[float, float, float, int]:
    """(win rate, Wilson low, Wilson high, n) of paired scores; ties within 1e-9 count half."""
    if len(policy) != len(reference):
        raise ValueError(f"{len(policy)} policy scores but {len(reference)} reference scores")
    wins = sum(1.0 if p - r > TIE else 0.5 if abs(p - r) <= TIE else 0.0 for p, r in zip(policy, reference))
    n = len(policy)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    low, high = wilson(wins, n)
    return wins / n, low, high, n


def judge_metrics(rate: tuple[float, float, float, int]) -> dict[str, float | None]:
    """The judge/* entries of a checkpoint's metrics from `win_rate(...)` / `engine.judge.judge_win_rate(...)`."""
    value, low, high, n = rate
    return {"judge/win_rate": value if n else None, "judge/win_rate_low": low if n else None,
            "judge/win_rate_high": high if n else None, "judge/n": float(n)}


def judge_win_rate(judge, prompts: Sequence[str], policy_texts: Sequence[str],
                   reference_texts: Sequence[str]) -> tuple[float, float, float, int]:
    """(win rate, Wilson 95% low, high, n) of the policy's answers against the reference's, pair by pair; ties
    count half. `judge` is anything with `score(prompts, completions) -> list[float]` (engine.judge.load_judge)."""
    if not len(prompts) == len(policy_texts) == len(reference_texts):
        raise ValueError("prompts, policy_texts and reference_texts must be paired (same length)")
    policy = judge.score(list(prompts), list(policy_texts))
    reference = judge.score(list(prompts), list(reference_texts))
    return win_rate(policy, reference)


def judge_wins(judge, samples: pl.DataFrame, ref_samples: pl.DataFrame) -> pl.DataFrame:
    """Per answer pair (`prompt_id`, `sample_idx`): `judge_win` 1 / 0.5 (tie) / 0 for the checkpoint's answer over
    the reference's, the marks `win_rate` averages. Kept in samples.parquet so runs can be compared prompt by
    prompt (`dpo-doctor compare`: a paired comparison across checkpoints on the same prompts)."""
    both = samples.select("prompt_id", "sample_idx", "prompt", "text").join(
        ref_samples.select("prompt_id", "sample_idx", pl.col("text").alias("ref_text")),
        on=["prompt_id", "sample_idx"]).sort("prompt_id", "sample_idx")
    prompts = both["prompt"].to_list()
    policy, reference = judge.score(prompts, both["text"].to_list()), judge.score(prompts, both["ref_text"].to_list())
    marks = [1.0 if p - r > TIE else 0.5 if abs(p - r) <= TIE else 0.0 for p, r in zip(policy, reference)]
    return both.select("prompt_id", "sample_idx").with_columns(judge_win=pl.Series(marks, dtype=pl.Float64))


def rate_of_wins(wins: pl.DataFrame) -> tuple[float, float, float, int]:
    """`win_rate`'s (rate, Wilson low, high, n) from `judge_wins` marks."""
    n = wins.height
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    total = float(wins["judge_win"].sum())
    low, high = wilson(total, n)
    return total / n, low, high, n
