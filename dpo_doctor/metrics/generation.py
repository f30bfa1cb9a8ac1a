"""All generation-probe metrics (`gen/*`) of one checkpoint, and their units and bad directions.

Pure functions of samples.parquet rows (no model): length (`length_gen`), KL budget (`kl`) and diversity
(`diversity`); plus the info of `drift/kl_on_data_per_token`, which the engine measures on the pair texts
(`engine.generate.data_kl_per_token`).
"""

from __future__ import annotations

import polars as pl

from dpo_doctor.metrics import MetricInfo, diversity, kl, length_gen
from dpo_doctor.metrics.diversity import diversity_metrics
from dpo_doctor.metrics.kl import kl_metrics
from dpo_doctor.metrics.length_gen import length_metrics

DATA_KL_INFO = {
    "drift/kl_on_data_per_token": MetricInfo(
        "nats/token", "high", "mean exact per-token KL(pi || pi_ref) on the pair texts (drift on data, "
                              "not the KL budget)"),
}

METRIC_INFO: dict[str, dict] = {k: v.to_dict() for info in (length_gen.INFO, kl.INFO, diversity.INFO, DATA_KL_INFO)
                                for k, v in info.items()}


def generation_metrics(samples: pl.DataFrame, ref_samples: pl.DataFrame, beta: float,
                       vocab_size: int) -> dict[str, float | None]:
    """Every gen/* metric of one checkpoint's samples (pass the reference's rows as both for the reference)."""
    return {**length_metrics(samples, ref_samples, beta), **kl_metrics(samples),
            **diversity_metrics(samples, vocab_size)}


__all__ = ["METRIC_INFO", "diversity_metrics", "generation_metrics", "kl_metrics", "length_metrics"]
