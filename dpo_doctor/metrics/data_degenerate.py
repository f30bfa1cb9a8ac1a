"""Pairs that teach nothing or something broken: empty answers, chosen == rejected, prompts with no distinct answers.

- empty: the chosen or the rejected answer is empty or whitespace only (the trainer then learns from the EOS token
  alone, or prefers saying nothing);
- identical: chosen == rejected exactly (zero margin for ever; the scan excludes them from accuracy);
- a prompt with no distinct answers: every pair of that prompt has the same answer on both sides after
  normalization (case, punctuation, spacing), so it carries no preference.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dpo_doctor.metrics.info import MetricInfo
from dpo_doctor.metrics.minhash import PairPrints

INFO = {
    "data/empty_answer_frac": MetricInfo("fraction", "high", "share of pairs with an empty or whitespace-only "
                                         "chosen or rejected answer"),
    "data/identical_frac": MetricInfo("fraction", "high", "share of pairs with chosen == rejected"),
    "data/no_distinct_prompt_frac": MetricInfo("fraction", "high", "share of prompts whose pairs all have the same "
                                               "answer on both sides (after normalization)"),
}


def compute(df: pl.DataFrame, fp: PairPrints) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(stats, per-pair columns: empty_answer, identical, no_distinct_prompt)."""
    n = df.height
    empty = df.select((pl.col("chosen").str.strip_chars() == "") | (pl.col("rejected").str.strip_chars() == "")
                      ).to_series().fill_null(True).to_numpy()
    identical = df["excluded"].to_numpy()
    frame = pl.DataFrame({"p": fp.prompt, "same": fp.chosen == fp.rejected})
    per_prompt = frame.group_by("p").agg(pl.col("same").all().alias("none"))
    none = frame.join(per_prompt, on="p", how="left", maintain_order="left")["none"].to_numpy()
    stats = {"data/empty_answer_frac": float(empty.mean()) if n else None,
             "data/identical_frac": float(identical.mean()) if n else None,
             "data/no_distinct_prompt_frac": float(per_prompt["none"].mean()) if n else None}
    return stats, {"empty_answer": empty, "identical": identical, "no_distinct_prompt": none}
