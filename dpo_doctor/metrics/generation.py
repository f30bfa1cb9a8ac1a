"""All generation-probe metrics (`gen/*`) of one checkpoint, and their units and bad directions.

Pure functions of samples.parquet rows (no model): length (`length_gen`), KL budget (`kl`), diversity
(`diversity`), degeneration inside an answer (`degeneration`) and, on a verifiable suite, task accuracy
(`task_accuracy`, `task/*`); plus the info of `drift/kl_on_data_per_token`, which the engine measures on the
pair texts (`engine.generate.data_kl_per_token`).
"""

from __future__ import annotations

from typing import Sequence

import polars as pl

from dpo_doctor.metrics.info import MetricInfo
from dpo_doctor.metrics import degeneration, diversity, judge_win, kl, length_gen, task_accuracy
from dpo_doctor.metrics.degeneration import degeneration_metrics
from dpo_doctor.metrics.diversity import diversity_metrics
from dpo_doctor.metrics.kl import kl_metrics
from dpo_doctor.metrics.length_gen import length_metrics

DATA_KL_INFO = {
    "drift/kl_on_data_per_token": MetricInfo(
        "nats/token", "high", "mean exact per-token KL(pi || pi_ref) on the pair texts (drift on data, "
                              "not the KL budget)"),
}

METRIC_INFO: dict[str, dict] = {k: v.to_dict() for info in (length_gen.INFO, kl.INFO, diversity.INFO,
                                                            degeneration.INFO, task_accuracy.INFO,
                                                            judge_win.INFO, DATA_KL_INFO)
                                for k, v in info.items()}


def generation_metrics(samples: pl.DataFrame, ref_samples: pl.DataFrame, beta: float, vocab_size: int,
                       answers: Sequence[tuple[str, str]] | None = None) -> dict[str, float | None]:
    """Every gen/* metric of one checkpoint's samples (pass the reference's rows as both for the reference), and
    task/* when the probe suite is verifiable (`answers[prompt_id] = (answer, check)`, `Suite.answers`)."""
    out = {**length_metrics(samples, ref_samples, beta), **kl_metrics(samples),
           **diversity_metrics(samples, vocab_size), **degeneration_metrics(samples, ref_samples)}
    if answers:
        out.update(task_accuracy.task_metrics(samples, ref_samples, answers))
    return out


__all__ = ["METRIC_INFO", "degeneration_metrics", "diversity_metrics", "generation_metrics", "kl_metrics",
           "length_metrics"]
