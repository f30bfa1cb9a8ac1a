"""DPO302 likelihood-displacement-risk: many pairs whose two answers are nearly the same, to the eye or to the model.

What it detects
    Either of:
    * `data/min_edit_frac` > `max_min_edit_frac` (0.2): the share of pairs (chosen != rejected) whose answers are
      at most max(1, 0.1 x length) token edits apart (Levenshtein over the tokenizer's ids, or normalized words);
    * with --ref, `ches/risk_frac` > `max_ches_risk_frac` (0.2): the share of pairs whose length-normalized CHES
      score on the reference's own hidden states is positive, where the first-order analysis of Razin et al.
      predicts the chosen answer's likelihood falls under DPO. CHES comes from the same forward pass as the
      reference's log-probs (one pass per answer).

Why it matters
    DPO raises the gap between chosen and rejected, not the chosen likelihood itself. When the answers share almost
    everything, the push down on the rejected answer drags the chosen one with it, and the mass can move to
    answers of opposite meaning: preferring "No" over "Never" raised P("Yes"), and refusal training cut
    Llama-3-8B-Instruct's refusal rate from 74.4% to 33.4% (Razin et al. 2024). Low edit-distance pairs are where
    Smaug's authors saw the chosen log-prob fall (Pal et al. 2024).

Evidence
    `data/min_edit_frac` and `ches/risk_frac` with their thresholds; per pair, `edit_distance`, `ches`,
    `ches_norm` and `displacement_risk` in audit_pairs.parquet.

Recommended fix
    Add an NLL term on the chosen answers: RPO (TRL `DPOConfig(rpo_alpha=1.0)`; `dpo-doctor train --loss rpo`), or
    DPOP (a penalty when the chosen likelihood falls below the reference's). Or drop the pairs at risk:
    filter_ids.jsonl lists them (reasons `min_edit`, `displacement_risk`); Razin et al. filter the highest-CHES
    pairs.

References
    Razin, Malladi, Bhaskar, Chen, Arora, Hanin 2025 (Unintentional Unalignment: Likelihood Displacement in Direct
    Preference Optimization, ICLR, arXiv:2410.08847; CHES in princeton-nlp/unintentional-unalignment); Pal,
    Karkhanis, Dooley, Roberts, Naidu, White 2024 (Smaug: DPO-Positive, arXiv:2402.13228); Pang et al. 2024
    (Iterative Reasoning Preference Optimization, RPO, arXiv:2404.19733).
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("data/min_edit_frac", "ches/risk_frac", "ches/norm_median")


def check(facts: RunFacts, *, max_min_edit_frac: float = 0.2, max_ches_risk_frac: float = 0.2,
          rpo_alpha: float = 1.0) -> Finding | None:
    edits, risk = facts.data("data/min_edit_frac"), facts.data("ches/risk_frac")
    found = []
    if edits is not None and edits > max_min_edit_frac:
        found.append((Evidence("data/min_edit_frac", edits, max_min_edit_frac, 0.0),
                      f"{fmt(100 * edits)}% of pairs differ by only a token or a few"))
    if risk is not None and risk > max_ches_risk_frac:
        found.append((Evidence("ches/risk_frac", risk, max_ches_risk_frac, 0.0),
                      f"{fmt(100 * risk)}% of pairs have a positive length-normalized CHES on the reference "
                      "(chosen likelihood predicted to fall)"))
    if not found:
        return None
    message = ("likelihood displacement risk: " + "; ".join(t for _, t in found)
               + ". DPO may lower the chosen answers' likelihood together with the rejected ones'.")
    fix = Recommendation(
        f"Add an NLL term on the chosen answers (RPO: TRL DPOConfig(rpo_alpha={fmt(rpo_alpha)})), or DPOP; or drop "
        "the pairs at risk listed in filter_ids.jsonl (reasons min_edit, displacement_risk).",
        variant="rpo", params={"rpo_alpha": rpo_alpha})
    return Finding(message, tuple(e for e, _ in found), fix)


EXAMPLES = (
    Example("answers one token apart in 95% of pairs", make_facts(data={"data/min_edit_frac": 0.95}), True,
            variant="rpo"),
    Example("reference sees 40% of pairs as displacement-prone (CHES)",
            make_facts(data={"data/min_edit_frac": 0.02, "ches/risk_frac": 0.4}), True, variant="rpo"),
    Example("distinct answers, low CHES", make_facts(data={"data/min_edit_frac": 0.01, "ches/risk_frac": 0.03}),
            False),
)

RULE = Rule("DPO302", "likelihood-displacement-risk", "likelihood_displacement_risk", "warning", check, __doc__,
            EXAMPLES, reads=READS, source="data")
