"""DPO306 truncated-pairs: pairs longer than max_length, cut (or dropped) by the trainer.

What it detects
    `data/over_max_length_frac` > `max_over_frac` (0.05): the share of pairs whose prompt plus longer answer exceeds
    --max-length (tokens of the model's tokenizer and chat template with --ref or --tokenizer; whitespace words
    without, a lower bound), or any pair dropped because its prompt alone fills max_length (`data/dropped_frac` >
    `max_dropped_frac`, 0).

Why it matters
    TRL truncates prompt + answer to max_length keeping the start, so the end of a long answer, often where chosen
    and rejected differ, is never trained on; two answers cut to the same prefix become a zero-margin pair, and the
    truncated chosen answers teach the policy to stop mid-sentence. Pairs whose prompt fills max_length are
    dropped silently.

Evidence
    `data/over_max_length_frac` and `data/dropped_frac` with their thresholds, `data/full_length_p95` (the length
    that would fit 95% of pairs); per pair, `full_len` and `over_max_length` in audit_pairs.parquet.

Recommended fix
    Raise max_length to about the 95th percentile (`params.max_length`) if memory allows, or drop the long pairs
    (filter_ids.jsonl, reason `over_max_length`); TRL's `max_prompt_length` / truncation mode shorten prompts first.

References
    huggingface/trl DPOTrainer and DataCollatorForPreference (max_length, keep_start truncation); hiyouga/LLaMA-Factory
    cutoff_len (the same cut for its DPO stage).
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("data/over_max_length_frac", "data/dropped_frac", "data/full_length_p95")


def check(facts: RunFacts, *, max_over_frac: float = 0.05, max_dropped_frac: float = 0.0) -> Finding | None:
    over, dropped = facts.data("data/over_max_length_frac"), facts.data("data/dropped_frac")
    found = []
    if over is not None and over > max_over_frac:
        found.append((Evidence("data/over_max_length_frac", over, max_over_frac, 0.0),
                      f"{fmt(100 * over)}% of pairs exceed max_length and are cut"))
    if dropped is not None and dropped > max_dropped_frac:
        found.append((Evidence("data/dropped_frac", dropped, max_dropped_frac, 0.0),
                      f"{fmt(100 * dropped)}% are dropped (the prompt alone fills max_length)"))
    if not found:
        return None
    p95 = facts.data("data/full_length_p95")
    message = "truncation: " + "; ".join(t for _, t in found) + "; the trainer never sees their ends."
    fix = Recommendation(f"Raise max_length to about {fmt(p95)} (fits 95% of pairs) if memory allows, or drop the "
                         "long pairs (filter_ids.jsonl, reason over_max_length).",
                         params={"max_length": float(p95) if p95 is not None else None})
    return Finding(message, tuple(e for e, _ in found), fix)


EXAMPLES = (
    Example("40% of pairs over max_length", make_facts(data={"data/over_max_length_frac": 0.4,
                                                             "data/full_length_p95": 1800.0}), True),
    Example("a prompt fills max_length", make_facts(data={"data/over_max_length_frac": 0.01,
                                                          "data/dropped_frac": 0.01}), True),
    Example("everything fits", make_facts(data={"data/over_max_length_frac": 0.0, "data/dropped_frac": 0.0}), False),
)

RULE = Rule("DPO306", "truncated-pairs", "truncation", "warning", check, __doc__, EXAMPLES, reads=READS,
            source="data")
