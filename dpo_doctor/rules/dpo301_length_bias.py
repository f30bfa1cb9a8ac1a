"""DPO301 length-bias: in the preference data, the longer answer is usually the chosen one.

What it detects
    Before any training, on the pairs themselves (`dpo-doctor data`): the accuracy a pure "the longer answer wins"
    preference reaches on these labels, `length/longer_wins_accuracy` (ties count half), above
    `max_longer_wins_accuracy` (0.7), or the median per-pair length ratio chosen / rejected, `length/median_ratio`,
    above `max_median_ratio` (1.5). Lengths are the tokenizer's tokens (with --ref or --tokenizer) or whitespace
    words, after the trainer's truncation; pairs with chosen == rejected are left out.

Why it matters
    DPO learns whatever separates chosen from rejected. When length alone predicts most labels, length is the
    cheapest thing to learn: DPO outputs ran about twice as long while the data carried only a small bias (Park et
    al. 2024), and 70-90% of the reward gain on some tasks is length (Singhal et al. 2023). The same skew is what
    `dpo-doctor scan` reads for DPO101 once a run exists.

Evidence
    `length/longer_wins_accuracy` (balanced value 0.5) and `length/median_ratio` (balanced 1.0), each with its
    threshold; `length/chosen_longer_frac` and the mean lengths are in the report's data statistics.

Recommended fix
    Train with a length-aware loss: R-DPO (`variant` r_dpo; a per-token penalty alpha on the length difference,
    0.01-0.05 in Park et al.; `dpo-doctor train --loss r_dpo`), or a length-normalised loss: SimPO, TRL
    `loss_type="sigmoid_norm"`, or LD-DPO with TRL `DPOConfig(ld_alpha=0.5)`. Or rebalance the data so the longer
    answer wins about half the time (drop or add pairs).

References
    Park, Rafailov, Ermon, Finn 2024 (Disentangling Length from Quality in DPO, R-DPO, arXiv:2403.19159); Singhal,
    Goyal, Xu, Durrett 2023 (A Long Way to Go: Investigating Length Correlations in RLHF, arXiv:2310.03716); Meng,
    Xia, Chen 2024 (SimPO, arXiv:2405.14734); LD-DPO (arXiv:2409.06411); hiyouga/LLaMA-Factory#5321 and
    huggingface/trl#2003 (users' DPO runs growing long on length-skewed data).
    GitHub threads: owner/repo#N is https://github.com/owner/repo/issues/N.
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("length/longer_wins_accuracy", "length/median_ratio", "length/chosen_longer_frac", "length/chosen_mean",
         "length/rejected_mean")


def check(facts: RunFacts, *, max_longer_wins_accuracy: float = 0.7, max_median_ratio: float = 1.5,
          r_dpo_alpha: float = 0.01) -> Finding | None:
    acc, ratio = facts.data("length/longer_wins_accuracy"), facts.data("length/median_ratio")
    if not ((acc is not None and acc > max_longer_wins_accuracy) or (ratio is not None and ratio > max_median_ratio)):
        return None
    frac = facts.data("length/chosen_longer_frac")
    c, r = facts.data("length/chosen_mean"), facts.data("length/rejected_mean")
    gap = c - r if c is not None and r is not None else None
    message = (f"length bias: the chosen answer is longer in {fmt(100 * (frac or 0))}% of pairs; 'the longer answer "
               f"wins' alone matches {fmt(100 * (acc or 0))}% of the labels (median length ratio {fmt(ratio)}), so a "
               "policy can win the preference by growing longer.")
    fix = Recommendation(
        f"Train with R-DPO (length penalty alpha {fmt(r_dpo_alpha)}-0.05 per token) or a length-normalised loss "
        "(SimPO, TRL loss_type='sigmoid_norm', or TRL DPOConfig(ld_alpha=0.5)); or rebalance the pairs so the "
        "longer answer wins about half the time.",
        variant="r_dpo", params={"r_dpo_alpha": r_dpo_alpha, "ld_alpha": 0.5, "length_gap": gap})
    return Finding(message, (Evidence("length/longer_wins_accuracy", acc, max_longer_wins_accuracy, 0.5),
                             Evidence("length/median_ratio", ratio, max_median_ratio, 1.0)), fix)


EXAMPLES = (
    Example("chosen longer in 90% of pairs (ratio 2.1)",
            make_facts(data={"length/longer_wins_accuracy": 0.9, "length/median_ratio": 2.1,
                             "length/chosen_longer_frac": 0.9, "length/chosen_mean": 40.0,
                             "length/rejected_mean": 19.0}), True, variant="r_dpo"),
    Example("HH-like small bias (79.6 vs 75.7 tokens, Park et al.)",
            make_facts(data={"length/longer_wins_accuracy": 0.55, "length/median_ratio": 1.05,
                             "length/chosen_longer_frac": 0.55}), False),
    Example("no length statistics", make_facts(), False),
)

RULE = Rule("DPO301", "length-bias", "length_bias", "warning", check, __doc__, EXAMPLES, reads=READS, source="data")
