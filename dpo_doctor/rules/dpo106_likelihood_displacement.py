"""DPO106 likelihood-displacement: the chosen responses lose probability almost as fast as the rejected ones.

What it detects
    At the last checkpoint the chosen log-prob fell below the reference's by more than `max_chosen_drop`
    nats/token (`drift_per_token/chosen`), on at least `min_fell_frac` of pairs (`drift/chosen_fell_frac`), and the
    rejected side did not fall at least `normal_ratio` (2) times as fast (`drift_per_token/rejected` /
    `drift_per_token/chosen` < 2). Rejected falling >= 2x faster than chosen is ordinary DPO dynamics and is not
    flagged.

Why it matters
    DPO only needs the chosen log-prob to rise RELATIVE to the rejected one, so both can fall. Some fall is expected
    (E[chosen log-ratio] ~ -KL(ref || policy) when the reference was SFT'd on the chosen data, Rafailov et al. 2024),
    but when chosen falls nearly as fast as rejected the mass goes somewhere else: to responses in neither set,
    sometimes of the opposite meaning (Razin et al. 2025: a refusal rate fell from 74% to 33%). Low edit-distance
    pairs ("2+2=4" vs "2+2=5") are the classic trigger (Pal et al. 2024).

Evidence
    `drift_per_token/chosen` (threshold -max_chosen_drop; reference value: its value at the first checkpoint),
    `drift_per_token/rejected` (threshold: normal_ratio x the chosen drift) and `drift/chosen_fell_frac`.

Recommended fix
    Add an NLL term on the chosen responses (RPO, rpo_alpha 1, Pang et al. 2024) or use DPOP (dpop_lambda 50),
    and raise beta mildly by the measured overshoot: beta_new = beta * |chosen drift| / max_chosen_drop, since the
    distance a DPO policy travels from its reference scales roughly as 1/beta. Filtering near-identical pairs
    (high CHES, Razin et al.) helps when they dominate.

References
    Pal, Karkhanis, Dooley, Roberts, Naidu, White 2024 (Smaug / DPOP, arXiv:2402.13228); Razin, Malladi, Bhaskar,
    Chen, Arora, Hanin 2025 (Unintentional Unalignment: Likelihood Displacement in DPO, ICLR, arXiv:2410.08847);
    Pang et al. 2024 (RPO: Iterative Reasoning Preference Optimization, arXiv:2404.19733); Rafailov, Hejna, Park,
    Finn 2024 (From r to Q*, arXiv:2404.12358); Rafailov, Chittepu, Park et al. 2024 (Scaling Laws for Reward Model
    Overoptimization in DAAs, arXiv:2406.02900, section 3.5); Feng, Qin, Huang, Zhang, Lei 2024 (Towards Analyzing
    and Understanding the Limitations of DPO, arXiv:2404.04626); Shi, Land, Locatelli, Geist, Bartolo 2024
    (Understanding Likelihood Over-optimisation in DAAs, arXiv:2410.11677); Liu et al. 2024 (Your SFT Loss is
    Implicitly an Adversarial Regularizer, arXiv:2405.16436); eric-mitchell/direct-preference-optimization#32 and
    #36 (chosen log-probs fall after SFT on chosen); huggingface/trl#800 (both fall: add an NLL term);
    hiyouga/LlamaFactory#6153, hiyouga/LlamaFactory#7643 and OpenRLHF/OpenRLHF#1054 (set `pref_ftx`, the SFT loss
    coefficient); princeton-nlp/SimPO#42 (larger beta or lower LR).
    GitHub threads: owner/repo#N is https://github.com/owner/repo/issues/N.
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("drift_per_token/chosen", "drift_per_token/rejected", "drift/chosen_fell_frac")


def displacement_fix(beta: float, drop: float, allowed: float, unit: str) -> Recommendation:
    """Shared with DPO203 (the same problem read from the log, in summed nats)."""
    beta_new = beta * drop / allowed
    return Recommendation(
        f"Add an NLL term on chosen (RPO, rpo_alpha 1; DPOP with dpop_lambda 50 is the alternative) and raise beta "
        f"from {fmt(beta)} to {fmt(beta_new)} (= beta x chosen drop {fmt(drop)} / allowed {fmt(allowed)} {unit}).",
        beta=beta_new, variant="rpo",
        params={"rpo_alpha": 1.0, "dpop_lambda": 50.0, "chosen_drop": drop, "allowed_drop": allowed,
                "beta_old": beta})


def check(facts: RunFacts, *, max_chosen_drop: float = 1.0, min_fell_frac: float = 0.9,
          normal_ratio: float = 2.0) -> Finding | None:
    if not facts.trained:
        return None
    first, ck = facts.trained[0], facts.trained[-1]
    c, r, frac = (ck.get(k) for k in READS)
    if c is None or r is None or frac is None:
        return None
    if c >= -max_chosen_drop or frac < min_fell_frac or r / c >= normal_ratio:
        return None
    evidence = (Evidence("drift_per_token/chosen", c, -max_chosen_drop, first.get("drift_per_token/chosen")),
                Evidence("drift_per_token/rejected", r, normal_ratio * c, None),
                Evidence("drift/chosen_fell_frac", frac, min_fell_frac, None))
    message = (f"likelihood displacement at {ck.name}: the chosen log-prob fell {fmt(-c)} nats/token below the "
               f"reference on {fmt(100 * frac)}% of pairs, while rejected fell only {fmt(r / c)}x as fast "
               f"({fmt(r)} nats/token); probability mass is leaving both sides.")
    return Finding(message, evidence, displacement_fix(facts.beta, -c, max_chosen_drop, "nats/token"), ck.name)


def _ck(c, r, frac=1.0):
    return {"drift_per_token/chosen": c, "drift_per_token/rejected": r, "drift/chosen_fell_frac": frac}


EXAMPLES = (
    Example("zoo likelihood_displacement: chosen -2.75, rejected -4.19 nats/token (beta 0.1 x 2.75 / 1)",
            make_facts(_ck(-1.35, -1.93), _ck(-2.75, -4.19)), True, beta=0.275, variant="rpo"),
    Example("rejected rises while chosen falls", make_facts(_ck(-1.5, 0.2, 0.95)), True),
    Example("healthy: chosen -0.5, rejected -1.1 nats/token", make_facts(_ck(-0.51, -1.14, 0.98)), False),
    Example("large drop but rejected falls 8x faster (normal dynamics)", make_facts(_ck(-1.2, -9.7)), False),
    Example("drop on only half of the pairs", make_facts(_ck(-1.5, -2.0, 0.5)), False),
)

RULE = Rule("DPO106", "likelihood-displacement", "likelihood_displacement", "warning", check, __doc__, EXAMPLES,
            reads=READS)
