"""DPO305 contradictory-pairs: the same two answers to the same prompt are preferred both ways.

What it detects
    `data/contradiction_frac` > `max_contradiction_frac` (0): some prompt has answer A chosen over B in one pair and
    B chosen over A in another (A != B, compared after normalizing case, punctuation and spacing).

Why it matters
    A contradiction is label noise by construction: the two pairs' gradients cancel, their margins can never both
    be positive, and they form the persistent negative-margin tail that reads as label noise in every later scan.
    Usually a merge of annotators or data sets that disagree, or a swapped column in part of the file.

Evidence
    `data/contradiction_frac` with its threshold; per pair, `contradiction` in audit_pairs.parquet.

Recommended fix
    Resolve or drop the contradictory pairs (filter_ids.jsonl, reason `contradiction`, lists both sides); if many
    pairs contradict, check how the file was assembled. If the disagreement is real (noisy raters), train with
    cDPO / robust DPO (`label_smoothing` = the estimated flip rate).

References
    Mitchell 2023 (A note on DPO with noisy preferences and relationship to IPO, cDPO); Ray Chowdhury, Kini,
    Natarajan 2024 (Provably Robust DPO, ICML, arXiv:2403.00409).
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("data/contradiction_frac",)


def check(facts: RunFacts, *, max_contradiction_frac: float = 0.0) -> Finding | None:
    frac = facts.data("data/contradiction_frac")
    if frac is None or frac <= max_contradiction_frac:
        return None
    n = f" ({fmt(frac * facts.n_pairs)} of {facts.n_pairs})" if facts.n_pairs else ""
    message = (f"contradictions: {fmt(100 * frac)}% of pairs{n} have the same two answers preferred the other way "
               "round in another pair; their gradients cancel and they read as label noise.")
    fix = Recommendation("Resolve or drop the contradictory pairs (filter_ids.jsonl, reason contradiction); if the "
                         "disagreement is real, use cDPO / robust DPO with label_smoothing = the flip rate.",
                         variant="cdpo", params={"label_smoothing": min(0.5, frac / 2) if frac else None})
    return Finding(message, (Evidence("data/contradiction_frac", frac, max_contradiction_frac, 0.0),), fix)


EXAMPLES = (
    Example("10% of pairs contradicted", make_facts(data={"data/contradiction_frac": 0.1}, n_pairs=100), True),
    Example("no contradiction", make_facts(data={"data/contradiction_frac": 0.0}), False),
)

RULE = Rule("DPO305", "contradictory-pairs", "contradictions", "warning", check, __doc__, EXAMPLES, reads=READS,
            source="data")
