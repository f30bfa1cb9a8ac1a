"""DPO304 duplicate-pairs: the same pair, or a near copy of it, appears more than once.

What it detects
    `data/duplicate_frac` > `max_duplicate_frac` (0.05): the share of pairs a deduplication would drop, i.e.
    exact copies of an earlier pair after normalizing case, punctuation and spacing (`data/exact_duplicate_frac`)
    plus near copies (`data/near_duplicate_frac`: MinHash estimated Jaccard >= 0.8 of the pair's word
    3-shingles).

Why it matters
    Every copy multiplies that pair's weight in the gradient and in every metric: a few repeated pairs are fitted
    first and hardest (memorisation rises sharply with repetition; Lee et al. 2022, Carlini et al. 2023), and
    repeats that straddle a train/eval split make the eval numbers look better than they are.

Evidence
    `data/duplicate_frac` with its threshold; `data/exact_duplicate_frac` and `data/near_duplicate_frac` split it.
    Per pair, `exact_duplicate`, `duplicate_of` and `near_duplicate` in audit_pairs.parquet.

Recommended fix
    Deduplicate: drop the pairs listed in filter_ids.jsonl with reason `duplicate` or `near_duplicate` (the first
    copy of each is kept).

References
    Lee, Ippolito, Nystrom, Zhang, Eck, Callison-Burch, Carlini 2022 (Deduplicating Training Data Makes Language
    Models Better, ACL, arXiv:2107.06499); Carlini, Ippolito, Jagielski, Lee, Tramer, Zhang 2023 (Quantifying
    Memorization Across Neural Language Models, ICLR, arXiv:2202.07646); Broder 1997 (MinHash).
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("data/duplicate_frac", "data/exact_duplicate_frac", "data/near_duplicate_frac")


def check(facts: RunFacts, *, max_duplicate_frac: float = 0.05) -> Finding | None:
    dup = facts.data("data/duplicate_frac")
    if dup is None or dup <= max_duplicate_frac:
        return None
    exact, near = facts.data("data/exact_duplicate_frac") or 0.0, facts.data("data/near_duplicate_frac") or 0.0
    message = (f"duplicates: {fmt(100 * dup)}% of pairs repeat an earlier pair ({fmt(100 * exact)}% exact copies, "
               f"{fmt(100 * near)}% near copies); they weigh those pairs more in every gradient step.")
    fix = Recommendation("Deduplicate: drop the pairs listed in filter_ids.jsonl with reason duplicate or "
                         "near_duplicate (the first copy of each stays).", params={"drop_frac": dup})
    return Finding(message, (Evidence("data/duplicate_frac", dup, max_duplicate_frac, 0.0),), fix)


EXAMPLES = (
    Example("a third of the pairs are copies", make_facts(data={"data/duplicate_frac": 0.33,
                                                                "data/exact_duplicate_frac": 0.3}), True),
    Example("one repeat in 500 pairs", make_facts(data={"data/duplicate_frac": 0.002}), False),
)

RULE = Rule("DPO304", "duplicate-pairs", "duplicates", "warning", check, __doc__, EXAMPLES, reads=READS,
            source="data")
