"""DPO307 reference-disfavours: the reference model finds many chosen answers far less likely than the rejected.

What it detects
    With --ref: `ref/disfavoured_frac` > `max_disfavoured_frac` (0.1), the share of pairs whose per-token
    reference margin, log pi_ref(chosen)/|chosen| - log pi_ref(rejected)/|rejected|, is below -1 nat per token
    (the chosen answer e = 2.7x less likely per token). Informational: these pairs are listed for review.

Why it matters
    A pair the reference strongly disfavours is one of: a mislabelled pair (label noise), a chosen answer off the
    reference's distribution (DPO then spends its KL budget on a distribution shift), or a genuinely hard pair.
    DPO rarely flips the pairs its reference ranks wrongly (fewer than 10% at the best checkpoint; Chen et al.
    2024). Which of the three it is needs a reader, so this is a review list, not a verdict of label noise.

Evidence
    `ref/disfavoured_frac` with its threshold, `ref/prefers_chosen_frac` (share the reference already ranks right)
    and `ref/margin_per_token_median`; per pair, `ref_margin`, `ref_margin_per_token` and `ref_disfavours` in
    audit_pairs.parquet, the worst listed in the report.

Recommended fix
    Read the listed pairs (audit_pairs.parquet, sort by ref_margin_per_token): fix flipped labels, drop broken
    ones; if the chosen answers are simply off the reference's distribution, SFT the reference on the chosen
    answers first. If the labels are noisy, cDPO / robust DPO with label_smoothing near the flip rate.

References
    Chen, Malladi, Zhang, Chen, Zhang, Ranganath, Cho 2024 (Preference Learning Algorithms Do Not Learn Preference
    Rankings, NeurIPS, arXiv:2405.19534); Xu et al. 2024 (Is DPO Superior to PPO for LLM Alignment?,
    arXiv:2404.10719); Mitchell 2023 (cDPO).
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("ref/disfavoured_frac", "ref/prefers_chosen_frac", "ref/margin_per_token_median")


def check(facts: RunFacts, *, max_disfavoured_frac: float = 0.1) -> Finding | None:
    frac = facts.data("ref/disfavoured_frac")
    if frac is None or frac <= max_disfavoured_frac:
        return None
    right = facts.data("ref/prefers_chosen_frac")
    message = (f"the reference strongly disfavours the chosen answer in {fmt(100 * frac)}% of pairs (more than 1 "
               f"nat/token less likely than the rejected; it ranks {fmt(100 * (right or 0))}% of pairs the labels' "
               "way): candidates for review, not a label-noise verdict.")
    fix = Recommendation("Read the listed pairs (audit_pairs.parquet, sorted by ref_margin_per_token): fix flipped "
                         "labels, drop broken pairs; SFT the reference on the chosen answers if they are off its "
                         "distribution.", params={"review_frac": frac})
    return Finding(message, (Evidence("ref/disfavoured_frac", frac, max_disfavoured_frac, 0.0),
                             Evidence("ref/prefers_chosen_frac", right, None, None)), fix)


EXAMPLES = (
    Example("a third of the chosen answers strongly disfavoured",
            make_facts(data={"ref/disfavoured_frac": 0.33, "ref/prefers_chosen_frac": 0.4}), True),
    Example("reference mostly agrees", make_facts(data={"ref/disfavoured_frac": 0.02,
                                                        "ref/prefers_chosen_frac": 0.7}), False),
    Example("no --ref: nothing to say", make_facts(data={"data/min_edit_frac": 0.0}), False),
)

RULE = Rule("DPO307", "reference-disfavours", "reference_disfavours", "info", check, __doc__, EXAMPLES, reads=READS,
            source="data")
