"""The quality signal of a compare, per checkpoint and per prompt, read from each run's finished scan.

The signal is the strongest one every scan measured, in best.py's order: the judge's win rate over the reference
(`judge/win_rate`), else the verifiable suite's task accuracy (`task/accuracy`); none without --judge or a
verifiable --probe-suite. Per prompt (the units of the paired comparison): a prompt's share of right answers
(greedy and sampled, checked again from samples.parquet with the suite's answers, exactly as `task/accuracy` is
computed), or its share of judge wins when the samples carry per-answer `judge_win` marks.
"""

from __future__ import annotations

import numpy as np
import polars as pl

SIGNALS = (("judge/win_rate", "judge win rate against the reference"), ("task/accuracy", "verifiable task accuracy"))


def pick_signal(bundles: list) -> tuple[str | None, str | None]:
    """(metric, label) of the strongest signal measured on every checkpoint of every run; (None, None) if none."""
    for key, label in SIGNALS:
        if all(b.checkpoints and all(c.metrics.get(key) is not None for c in b.checkpoints) for b in bundles):
            return key, label
    return None, None


def per_prompt(samples: pl.DataFrame | None, checkpoint: str, signal: str, answers) -> np.ndarray | None:
    """Per-prompt quality of one checkpoint (ordered by prompt id), or None when it cannot be rebuilt."""
    if samples is None or samples.is_empty():
        return None
    rows = samples.filter(pl.col("checkpoint") == checkpoint)
    if rows.is_empty():
        return None
    if signal == "task/accuracy" and answers is not None:
        from dpo_doctor.metrics.task_accuracy import scored

        if "probe_set" in rows.columns:  # the suite is sampled apart from the run's prompts, its ids after theirs
            rows = rows.filter(pl.col("probe_set") == "suite")
            if rows.is_empty():
                return None
            rows = rows.with_columns(pl.col("prompt_id") - pl.col("prompt_id").min())
        marks = scored(rows, answers).with_columns(pl.col("correct").cast(pl.Float64).alias("q"))
    elif signal == "judge/win_rate" and "judge_win" in rows.columns:
        marks = rows.select("prompt_id", pl.col("judge_win").cast(pl.Float64).alias("q"))
    else:
        return None
    per = marks.group_by("prompt_id").agg(pl.col("q").mean()).sort("prompt_id")
    return per["q"].to_numpy()


def suite_answers(probe_suite: str | None):
    """The verifiable suite's answers by prompt id (None without a verifiable suite)."""
    if not probe_suite:
        return None
    from dpo_doctor.data.suites import load_suite

    suite = load_suite(probe_suite)
    return suite.answers if suite.verifiable else None
