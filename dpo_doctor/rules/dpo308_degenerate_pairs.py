"""DPO308 degenerate-pairs: pairs with an empty answer, chosen == rejected, or prompts with no distinct answers.

What it detects
    Any of: `data/empty_answer_frac` > `max_empty_frac` (0), pairs whose chosen or rejected answer is empty or
    whitespace; `data/identical_frac` > `max_identical_frac` (0), pairs with chosen == rejected;
    `data/no_distinct_prompt_frac` > `max_no_distinct_frac` (0), prompts whose every pair has the same answer on
    both sides after normalizing case, punctuation and spacing.

Why it matters
    An identical pair has a zero margin for ever (a constant ln 2 in the loss, no gradient); an empty chosen answer
    teaches the policy to stop at once, an empty rejected one teaches little beyond "say something". Usually a
    broken export: a wrong column, a failed generation, a template that swallowed the answer.

Evidence
    The three shares with their thresholds; per pair, `empty_answer`, `identical` and `no_distinct_prompt` in
    audit_pairs.parquet.

Recommended fix
    Drop them (filter_ids.jsonl, reasons `empty_answer`, `identical`) and check the export that produced them.

References
    huggingface/trl DPOTrainer (a pair's loss is -log sigma(beta x margin): ln 2 with zero gradient when both
    answers are equal); Rafailov et al. 2023 (DPO, arXiv:2305.18290).
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("data/empty_answer_frac", "data/identical_frac", "data/no_distinct_prompt_frac")
TEXT = {"data/empty_answer_frac": "have an empty or whitespace answer",
        "data/identical_frac": "have chosen == rejected", "data/no_distinct_prompt_frac": "of prompts have no "
        "distinct answers"}


def check(facts: RunFacts, *, max_empty_frac: float = 0.0, max_identical_frac: float = 0.0,
          max_no_distinct_frac: float = 0.0) -> Finding | None:
    found = []
    for key, limit in (("data/empty_answer_frac", max_empty_frac), ("data/identical_frac", max_identical_frac),
                       ("data/no_distinct_prompt_frac", max_no_distinct_frac)):
        value = facts.data(key)
        if value is not None and value > limit:
            found.append((Evidence(key, value, limit, 0.0), f"{fmt(100 * value)}% {TEXT[key]}"))
    if not found:
        return None
    message = "degenerate pairs: " + "; ".join(t for _, t in found) + "; they carry no usable preference."
    fix = Recommendation("Drop them (filter_ids.jsonl, reasons empty_answer, identical) and check the export that "
                         "produced them.")
    return Finding(message, tuple(e for e, _ in found), fix)


EXAMPLES = (
    Example("5% empty chosen answers", make_facts(data={"data/empty_answer_frac": 0.05}), True),
    Example("clean pairs", make_facts(data={"data/empty_answer_frac": 0.0, "data/identical_frac": 0.0,
                                            "data/no_distinct_prompt_frac": 0.0}), False),
)

RULE = Rule("DPO308", "degenerate-pairs", "degenerate_pairs", "warning", check, __doc__, EXAMPLES, reads=READS,
            source="data")
