"""The data audit without a model: every statistic of a pair table, computed once, for `dpo-doctor data` and for the
data section of `dpo-doctor scan` (the same function, so the two never disagree).

Input: the audit's pair table (`dpo_doctor.audit.table`): pair_id, prompt, chosen, rejected (answer text), len_chosen,
len_rejected (what the trainer sees: tokens after truncation, or whitespace words without a tokenizer), excluded
(chosen == rejected), full_len (untruncated prompt + longer answer), dropped (prompt alone fills max_length);
optionally chosen_tokens / rejected_tokens (token ids, for token edit distances).
Output: `DataAudit(stats, pairs)`, stats keyed as in `INFO`, pairs one row per pair with every per-pair flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import polars as pl

from dpo_doctor.metrics.info import MetricInfo
from dpo_doctor.metrics import (data_degenerate, data_diversity, data_duplicates, data_edits,
                                data_stats, data_truncation)
from dpo_doctor.metrics.minhash import pair_prints

MODULES = (data_stats, data_duplicates, data_diversity, data_edits, data_degenerate, data_truncation)
STEPS = ("fingerprints", "lengths", "duplicates", "diversity", "edit distances", "degenerate pairs", "truncation")


def info() -> dict[str, MetricInfo]:
    out: dict[str, MetricInfo] = {}
    for module in MODULES:
        out.update(module.INFO)
    return out


@dataclass(frozen=True)
class DataAudit:
    stats: dict[str, float | None]
    pairs: pl.DataFrame  # pair_id + per-pair flags and numbers (no texts)


def compute(df: pl.DataFrame, max_length: int | None,
            progress: Callable[[str, int, int], None] | None = None) -> DataAudit:
    """Every no-model statistic of the pair table; `progress(step, done, total)` after each step."""
    tick = (lambda i: progress("auditing pairs (no model)", i, len(STEPS))) if progress else (lambda i: None)
    tick(0)
    fp = pair_prints(df)
    tick(1)
    kept = df.filter(~pl.col("dropped"))  # the trainer never sees dropped pairs
    stats = dict(data_stats.compute(kept)) if kept.height else {k: None for k in data_stats.INFO}
    columns: dict = {}
    tick(2)
    for i, step in enumerate((lambda: data_duplicates.compute(fp), lambda: data_diversity.compute(fp),
                              lambda: data_edits.compute(df, fp), lambda: data_degenerate.compute(df, fp),
                              lambda: data_truncation.compute(df, max_length)), start=3):
        s, cols = step()
        stats.update(s)
        columns.update(cols)
        tick(i)
    ratio = (pl.col("len_chosen").cast(pl.Float64).clip(1) / pl.col("len_rejected").cast(pl.Float64).clip(1))
    pairs = df.select("pair_id", "len_chosen", "len_rejected", "full_len", "dropped",
                      ratio.alias("length_ratio")).with_columns(
        **{k: pl.Series(k, v) for k, v in columns.items()})
    return DataAudit(stats, pairs)
