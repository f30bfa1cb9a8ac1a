"""Diversity of a checkpoint's samples: distinct-n, EAD, self-BLEU, entropy and top-k mass (Kirk et al. 2023).

All n-gram metrics count token ids (the `token_ids` column of samples.parquet, answer tokens without EOS).
* per-input: the metric over the samples of one prompt, averaged over prompts (where RLHF/DPO cuts diversity
  most). Every prompt contributes the same number of samples (the smallest count over prompts, normally
  samples_per_prompt), so checkpoints are compared at equal sample counts.
* across-input: the metric over one sample per prompt (sample_idx 0): low means the same answer whatever the
  input (mode collapse).
distinct-n and self-BLEU are per-input; EAD is reported both ways. Entropy and top-k mass are per-token means of
pi(.|s_t) along the sampled answers. Only sampled rows count (the greedy row is deterministic by design).
"""

from __future__ import annotations

import polars as pl

from dpo_doctor.metrics.info import MetricInfo
from dpo_doctor.metrics.distinct_n import distinct_n
from dpo_doctor.metrics.ead import ead
from dpo_doctor.metrics.self_bleu import self_bleu

INFO = {
    "gen/ead_per_input": MetricInfo("EAD (about 1 = uniform random)", "low",
                                    "expectation-adjusted distinct 1..5-grams over the samples of one prompt, "
                                    "mean over prompts"),
    "gen/ead_across_input": MetricInfo("EAD (about 1 = uniform random)", "low",
                                       "expectation-adjusted distinct 1..5-grams over one sample per prompt"),
    **{f"gen/distinct_{n}": MetricInfo("fraction", "low", f"unique / total {n}-grams over the samples of one prompt, "
                                                          "mean over prompts") for n in (1, 2, 3)},
    "gen/self_bleu": MetricInfo("BLEU-3 (0..1)", "high",
                                "mean BLEU of each sample against the other samples of its prompt"),
    "gen/entropy_mean": MetricInfo("nats/token", "low", "mean policy entropy along the sampled answers"),
    "gen/topk_mass": MetricInfo("probability", "high", "mean top-10 probability mass along the sampled answers"),
}


def _mean(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def prompt_sets(samples: pl.DataFrame) -> list[list[list[int]]]:
    """Token-id answers grouped by prompt, each group cut to the same size (the smallest group's)."""
    groups = samples.sort("prompt_id", "sample_idx").group_by("prompt_id", maintain_order=True).agg("token_ids")
    sets = [list(map(list, ids)) for ids in groups["token_ids"].to_list()]
    size = min((len(s) for s in sets), default=0)
    return [s[:size] for s in sets]


def diversity_metrics(samples: pl.DataFrame, vocab_size: int) -> dict[str, float | None]:
    """gen/ead_*, gen/distinct_*, gen/self_bleu, gen/entropy_mean, gen/topk_mass of one checkpoint's rows."""
    drawn = samples.filter(~pl.col("greedy"))
    sets = prompt_sets(drawn)
    across = drawn.filter(pl.col("sample_idx") == 0).sort("prompt_id")["token_ids"].to_list()
    out = {
        "gen/ead_per_input": _mean([ead(s, vocab_size) for s in sets]),
        "gen/ead_across_input": ead(across, vocab_size),
        **{f"gen/distinct_{n}": _mean([distinct_n(s, n) for s in sets]) for n in (1, 2, 3)},
        "gen/self_bleu": _mean([self_bleu(s) for s in sets]),
        "gen/entropy_mean": None if drawn.is_empty() else float(drawn["entropy"].mean()),
        "gen/topk_mass": None if drawn.is_empty() else float(drawn["topk_mass"].mean()),
    }
    return out
