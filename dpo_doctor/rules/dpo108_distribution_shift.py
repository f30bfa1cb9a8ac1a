"""DPO108 distribution-shift: the preference data lies off the reference model's own distribution.

What it detects
    The reference's per-token NLL on the chosen responses, -`ref_logps/chosen` / `length/chosen_mean` (summed
    log-prob over summed length: the token-weighted mean), is more than `max_nll_ratio` (1.5) times its per-token
    NLL on its own samples. The latter is the reference's mean per-token entropy along its sampled answers
    (`reference.metrics["gen/entropy_mean"]`), since E_{y~pi}[-log pi(y_t | s_t)] = H(pi(. | s_t)) at temperature 1.
    Needs the generation probes.

Severity: info. It is a property of the (off-policy) data, measured on the reference before any training, so it
    says nothing about how this run went: on held-out Gemma-3-270M runs it fired on the healthy run exactly as on the
    over-optimized one (issue 20). It is context for the other findings (why margins come early, why the chosen
    answers may fall) and never makes the verdict a warning on its own; `dpo-doctor data --ref` reports the same
    gap before training.

Why it matters
    DPO can put mass on responses absent from the data, and is sensitive to the gap between the reference's
    distribution and the data's (Xu et al. 2024). When the chosen answers are unlikely under the reference, the
    implicit rewards measure that gap, large margins appear early and generations stay poor. The DPO authors
    SFT the reference on the preferred responses first for this reason.

Evidence
    `ref_logps/chosen` converted to NLL per token (value) vs the reference's `gen/entropy_mean` (reference value),
    threshold `max_nll_ratio` x that entropy.

Recommended fix
    SFT the starting model on the chosen responses first and run DPO from (and against) that model; on-policy
    data (online or iterative DPO on the policy's own samples) is the alternative. Beta does not fix a data gap.

References
    Xu, Fu, Gao, Ye, Liu, Mei, Wang, Yu, Wu 2024 ("Is DPO Superior to PPO for LLM Alignment?", ICML,
    arXiv:2404.10719); Rafailov et al. 2023 (DPO, arXiv:2305.18290: Preferred-FT reference; the
    eric-mitchell/direct-preference-optimization README: SFT on the preferred responses first); Guo et al. 2024
    (online DPO: Direct Language Model Alignment from Online AI Feedback, arXiv:2402.04792).
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts


def check(facts: RunFacts, *, max_nll_ratio: float = 1.5) -> Finding | None:
    ck = facts.checkpoints[0] if facts.checkpoints else None
    ref_lp, length, ent = (ck.get("ref_logps/chosen") if ck else None, facts.data("length/chosen_mean"),
                           facts.ref("gen/entropy_mean"))
    if ref_lp is None or not length or not ent or ent <= 0:
        return None
    nll = -ref_lp / length
    if nll <= max_nll_ratio * ent:
        return None
    evidence = (Evidence("ref_nll_per_token/chosen", nll, max_nll_ratio * ent, ent),)
    fix = Recommendation(
        "SFT the starting model on the chosen responses first and run DPO from and against it; online/iterative "
        "DPO on the policy's own samples is the alternative.", variant=None,
        params={"ref_nll_per_token_chosen": nll, "ref_entropy_per_token": ent, "ratio": nll / ent})
    message = (f"distribution shift: the reference needs {fmt(nll)} nats/token to produce the chosen answers but "
               f"only {fmt(ent)} nats/token on its own samples ({fmt(nll / ent)}x): the preference data is off its "
               f"distribution.")
    return Finding(message, evidence, fix, None)


EXAMPLES = (
    Example("chosen answers 3x less likely per token than the reference's own",
            make_facts({"ref_logps/chosen": -90.0}, data={"length/chosen_mean": 30.0},
                       reference={"gen/entropy_mean": 1.0}), True),
    Example("data close to the reference's distribution",
            make_facts({"ref_logps/chosen": -33.0}, data={"length/chosen_mean": 30.0},
                       reference={"gen/entropy_mean": 1.0}), False),
    Example("no generation probes: cannot tell", make_facts({"ref_logps/chosen": -90.0},
                                                            data={"length/chosen_mean": 30.0}), False),
)

RULE = Rule("DPO108", "distribution-shift", "distribution_shift", "info", check, __doc__, EXAMPLES,
            reads=("ref_logps/chosen", "length/chosen_mean", "gen/entropy_mean"))
