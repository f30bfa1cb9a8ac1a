"""DPO303 mode-collapse-risk: one (nearly) identical chosen answer is preferred across many prompts.

What it detects
    The chosen answers are clustered by MinHash (estimated Jaccard >= 0.8 of word 3-shingles after normalizing
    case, punctuation and spacing). Fires when the largest cluster is the chosen answer of more than
    `max_top_prompt_share` (0.2) of the distinct prompts (`data/chosen_top_prompt_share`) and of at least
    `min_prompts` (5) prompts.

Why it matters
    DPO moves probability toward what the chosen answers share. When they share the whole answer, a canned reply
    ("I'm sorry, I can't help with that.", a fixed template) becomes the policy's answer to everything: the loss
    falls while the model stops answering. RLHF-style training already narrows output diversity (Kirk et al. 2024);
    a canned chosen answer makes that the objective.

Evidence
    `data/chosen_top_prompt_share` (healthy: about 1 / number of prompts) with its threshold; the report also gives
    `data/chosen_mode_share`, the pooled distinct-2 of chosen vs rejected answers and the per-prompt share of
    distinct chosen answers.

Recommended fix
    Write or collect prompt-specific chosen answers, or keep only a few of the pairs whose chosen answer is the
    canned one (filter_ids.jsonl, reason `canned_chosen`). If some diversity loss remains, f-DPO with the JS
    divergence keeps more diversity than reverse KL (Wang et al. 2024); raising beta is not a reliable fix.

References
    Kirk, Mediratta, Nalmpantis, Luketina, Hambro, Grefenstette, Raileanu 2024 (Understanding the Effects of RLHF
    on LLM Generalisation and Diversity, ICLR, arXiv:2310.06452); Wang, Jiang, Yang, Liu, Chen 2024 (Beyond
    Reverse KL: f-DPO, ICLR, arXiv:2309.16240); Li, Galley, Brockett, Gao, Dolan 2016 (distinct-n,
    arXiv:1510.03055); Broder 1997 (MinHash: On the resemblance and containment of documents).
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("data/chosen_top_prompt_share", "data/n_prompts", "data/chosen_mode_share")


def check(facts: RunFacts, *, max_top_prompt_share: float = 0.2, min_prompts: float = 5) -> Finding | None:
    share, prompts = facts.data("data/chosen_top_prompt_share"), facts.data("data/n_prompts")
    if share is None or prompts is None or share <= max_top_prompt_share or share * prompts < min_prompts:
        return None
    message = (f"mode collapse risk: one chosen answer (or near copies of it) is preferred for {fmt(100 * share)}% "
               f"of the {fmt(prompts)} prompts; DPO will push the policy toward that answer for every prompt.")
    fix = Recommendation(
        "Write prompt-specific chosen answers, or keep only a few pairs with the canned chosen answer (filter_ids.jsonl, "
        "reason canned_chosen); f-DPO with the JS divergence keeps more diversity than reverse KL.",
        variant="f_dpo", params={"f_divergence": "js_divergence"})
    return Finding(message, (Evidence("data/chosen_top_prompt_share", share, max_top_prompt_share, 1 / prompts),), fix)


EXAMPLES = (
    Example("a canned refusal chosen for all 40 prompts",
            make_facts(data={"data/chosen_top_prompt_share": 1.0, "data/n_prompts": 40.0}), True, variant="f_dpo"),
    Example("each prompt its own chosen answer",
            make_facts(data={"data/chosen_top_prompt_share": 0.025, "data/n_prompts": 40.0}), False),
    Example("three prompts: a shared answer is no pattern yet",
            make_facts(data={"data/chosen_top_prompt_share": 0.67, "data/n_prompts": 3.0}), False),
)

RULE = Rule("DPO303", "mode-collapse-risk", "mode_collapse_risk", "warning", check, __doc__, EXAMPLES, reads=READS,
            source="data")
