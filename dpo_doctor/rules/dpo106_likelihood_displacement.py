"""DPO106 likelihood-displacement: the chosen responses lose probability almost as fast as the rejected ones.

What it detects
    At the last checkpoint the chosen answers became much less likely than under the reference: the mean summed
    log-prob `logps/chosen` is more than `min_drop_nats` (20) below `ref_logps/chosen`, on most pairs (the lower end
    of the Wilson 95% interval of `drift/chosen_fell_frac` over the scanned pairs is at least `min_fell_frac`, 0.7),
    and the rejected side did not fall at least `normal_ratio` (2) times as fast per token
    (`drift_per_token/rejected` / `drift_per_token/chosen` < 2). Rejected falling >= 2x faster than chosen is
    ordinary DPO dynamics and is not flagged.

    Why a drop per ANSWER, in nats (scale-free thresholds, 2026-12-02): the drop is a log probability ratio,
    log pi_ref(y) / pi(y), dimensionless and read the same on any model and vocabulary: 20 nats means the chosen
    answer is e^20 (5e8) times less likely than the reference made it. A per-token drop (the old -1 nat/token, then
    2x the reference's NLL per token) dilutes exactly the classic case: minimal-edit pairs ("... is 56" vs "... is
    57") put the whole gradient on one token of twenty, and on the SmolLM2 zoo's displacement run the per-token
    fall stayed near the reference's own 2 nats/token NLL while the chosen answers lost 46 nats each. 20 is also
    DPO203's threshold on the logged sums, so the scan and the log view agree. The share of pairs is judged by its
    confidence interval (48 held-out pairs need 39, 64 pairs 52).
    Measured, last checkpoint (chosen drop in nats per answer; rejected/chosen per token; share fell):
    * tiny zoo (64 pairs, the one-thread build of 2026-12-02): healthy 9.5 (2.33, 0.98), label_noise 8.8 (1.37,
      0.97), underfitting 3.3 (2.39), length_exploitation 12.9 (8.4), over_optimization 90.5 (2.40: rejected falls
      faster, not flagged), likelihood_displacement 82.8 (1.56, 1.0) and overfitting 32.5 (1.39, 1.0) fire (first on
      displacement, after DPO103 on overfitting);
    * SmolLM2 zoo (48 held-out pairs, LoRA): healthy 0.3, label_noise 0.2, length_exploitation and mode_collapse
      negative (chosen ROSE), likelihood_displacement 46.3 (1.04, 1.0: minimal-edit pairs at lr 3e-3; 33.2 at its
      first checkpoint), over_optimization 110 (1.16, 1.0: fires, listed after DPO102). Per token the displacement
      run's fall (2.3 nats/token) is about the reference's own NLL per chosen token (2.1), which the 2x-NLL rule
      of 2026-12-02 missed.

Why it matters
    DPO only needs the chosen log-prob to rise RELATIVE to the rejected one, so both can fall. Some fall is expected
    (E[chosen log-ratio] ~ -KL(ref || policy) when the reference was SFT'd on the chosen data, Rafailov et al. 2024),
    but when chosen falls nearly as fast as rejected the mass goes somewhere else: to responses in neither set,
    sometimes of the opposite meaning (Razin et al. 2025: a refusal rate fell from 74% to 33%). Low edit-distance
    pairs ("2+2=4" vs "2+2=5") are the classic trigger (Pal et al. 2024).

Evidence
    `logps/chosen` (threshold `ref_logps/chosen` - min_drop_nats; reference value: the reference's
    `ref_logps/chosen`), `drift_per_token/chosen` (reference value: its value at the first checkpoint),
    `drift_per_token/rejected` (threshold: normal_ratio x the chosen drift) and `drift/chosen_fell_frac` (threshold
    min_fell_frac; reference value: the lower end of its Wilson interval).

Recommended fix
    Add an NLL term on the chosen responses (RPO, rpo_alpha 1, Pang et al. 2024) or use DPOP (dpop_lambda 50),
    and raise beta by the measured overshoot, beta_new = beta * chosen drop / min_drop_nats, at most 4x: the
    distance a DPO policy travels from its reference scales roughly as 1/beta, but the NLL term is what stops the
    fall, so beta moves one notch, not the whole overshoot. Filtering near-identical pairs (high CHES, Razin et
    al.) helps when they dominate.

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

import math

from dpo_doctor.metrics.proportions import wilson
from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("drift_per_token/chosen", "drift_per_token/rejected", "drift/chosen_fell_frac", "logps/chosen",
         "ref_logps/chosen")


def displacement_fix(beta: float, drop: float, allowed: float, unit: str, max_raise: float = 4.0) -> Recommendation:
    """Shared with DPO203 (the same problem read from the log, in summed nats). The NLL term is the fix; beta is
    raised by the overshoot, at most `max_raise` times (one notch: the NLL term alone stops the fall)."""
    factor = min(drop / allowed, max_raise)
    beta_new = beta * factor
    return Recommendation(
        f"Add an NLL term on chosen (RPO, rpo_alpha 1; DPOP with dpop_lambda 50 is the alternative) and raise beta "
        f"from {fmt(beta)} to {fmt(beta_new)} (= beta x chosen drop {fmt(drop)} / allowed {fmt(allowed)} {unit}"
        + (f", clipped to {fmt(max_raise)}x" if factor < drop / allowed else "") + ").",
        beta=beta_new, variant="rpo",
        params={"rpo_alpha": 1.0, "dpop_lambda": 50.0, "chosen_drop": drop, "allowed_drop": allowed,
                "beta_old": beta})


def fell_share_low(frac: float, n_pairs: int | None) -> float:
    """Lower end of the Wilson 95% interval of the share of pairs whose chosen fell (the point value without n)."""
    return wilson(frac * n_pairs, n_pairs)[0] if n_pairs else frac


def check(facts: RunFacts, *, min_drop_nats: float = 20.0, min_fell_frac: float = 0.7,
          normal_ratio: float = 2.0) -> Finding | None:
    if not facts.trained:
        return None
    first, ck = facts.trained[0], facts.trained[-1]
    c, r, frac, lp, ref_lp = (ck.get(k) for k in READS)
    if None in (c, r, frac, lp, ref_lp) or c >= 0:
        return None
    drop, low = ref_lp - lp, fell_share_low(frac, facts.n_pairs)
    if drop <= min_drop_nats or low < min_fell_frac or r / c >= normal_ratio:
        return None
    first_drop = (first.get("ref_logps/chosen") or 0.0) - (first.get("logps/chosen") or 0.0)
    evidence = (Evidence("logps/chosen", lp, ref_lp - min_drop_nats, ref_lp),
                Evidence("drift_per_token/chosen", c, None, first.get("drift_per_token/chosen")),
                Evidence("drift_per_token/rejected", r, normal_ratio * c, None),
                Evidence("drift/chosen_fell_frac", frac, min_fell_frac, low))
    since = (f" (already {fmt(first_drop)} at {first.name})" if first is not ck and first_drop > min_drop_nats
             else "")
    message = (f"likelihood displacement at {ck.name}: the chosen answers are {fmt(drop)} nats less likely than "
               f"under the reference (a factor of {_factor(drop)}){since}, on {fmt(100 * frac)}% of pairs (95% "
               f"interval from {fmt(100 * low)}%), while rejected fell only {fmt(r / c)}x as fast per token "
               f"({fmt(r)} vs {fmt(c)} nats/token); probability mass is leaving both sides.")
    return Finding(message, evidence, displacement_fix(facts.beta, drop, min_drop_nats, "nats per answer"), ck.name)


def _factor(nats: float) -> str:
    return f"{math.exp(nats):,.0f}x" if nats < 40 else f"e^{nats:.0f}"


def _ck(c, r, frac=1.0, drop=30.0, ref_c=-40.0):
    return {"drift_per_token/chosen": c, "drift_per_token/rejected": r, "drift/chosen_fell_frac": frac,
            "ref_logps/chosen": ref_c, "logps/chosen": ref_c - drop}


EXAMPLES = (
    Example("tiny zoo likelihood_displacement (two-thread build): chosen 73.8 nats/answer below the reference "
            "(-2.63 nats/token), rejected -4.23 nats/token (beta 0.1 x min(73.8 / 20, 4))",
            make_facts(_ck(-1.34, -1.92, drop=37.5), _ck(-2.63, -4.23, drop=73.8), n_pairs=64), True, beta=0.369,
            variant="rpo"),
    Example("rejected rises while chosen falls", make_facts(_ck(-1.5, 0.2, 0.95)), True),
    Example("tiny zoo healthy: chosen 9.5 nats below, rejected falls 2.33x as fast per token (ordinary DPO)",
            make_facts(_ck(-0.47, -1.1, 0.98, drop=9.5), n_pairs=64), False),
    Example("tiny zoo label_noise: chosen 8.8 nats below (rejected 1.37x as fast): both fall, by less than 20 nats",
            make_facts(_ck(-0.39, -0.54, 0.97, drop=8.8), n_pairs=64), False),
    Example("large drop but rejected falls 8x faster (normal dynamics)", make_facts(_ck(-1.2, -9.7)), False),
    Example("drop on only half of the pairs", make_facts(_ck(-1.5, -2.0, 0.5)), False),
    Example("every pair of 8 fell: the Wilson interval reaches down to 0.68, too few pairs to call it 'most'",
            make_facts(_ck(-1.5, -2.0, 1.0), n_pairs=8), False),
    Example("no summed log-probs: nothing to measure the drop by",
            make_facts({"drift_per_token/chosen": -2.6, "drift_per_token/rejected": -4.2,
                        "drift/chosen_fell_frac": 1.0}), False),
)

RULE = Rule("DPO106", "likelihood-displacement", "likelihood_displacement", "warning", check, __doc__, EXAMPLES,
            reads=READS)
