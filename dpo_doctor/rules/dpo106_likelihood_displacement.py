"""DPO106 likelihood-displacement: the chosen responses lose probability almost as fast as the rejected ones.

What it detects
    At the last checkpoint the chosen log-prob fell below the reference's (`drift_per_token/chosen`, nats/token) by
    more than `max_drop_ratio` (2) times the reference's own NLL per chosen token (-`ref_logps/chosen` /
    `length/chosen_mean`), on most pairs: the lower end of the Wilson 95% interval of `drift/chosen_fell_frac`
    over the scanned pairs is at least `min_fell_frac` (0.7); and the rejected side did not fall at least
    `normal_ratio` (2) times as fast (`drift_per_token/rejected` / `drift_per_token/chosen` < 2, i.e. the chosen
    side lost more than the margin gained). Rejected falling >= 2x faster than chosen is ordinary DPO dynamics and
    is not flagged.

    Why relative to the reference's NLL (scale-free thresholds, 2026-12-02): the old -1 nat/token meant different
    things on different models. On the tiny zoo the reference is sure of its grammar (0.30-0.37 nats per chosen
    token), so a 1-nat fall nearly quadruples the chosen NLL; on the SmolLM2 zoo, whose chosen answers are the
    model's own temperature-1 samples (1.9-2.8 nats/token), the same fall is a fraction of the text's own
    uncertainty. "The policy's NLL on chosen is now 1 + 2 = 3x the reference's" means the same on both. The share
    of pairs is judged by its confidence interval, so 16 held-out pairs (SmolLM2 zoo) need 15 of 16 (Wilson low
    0.72) and 64 pairs (tiny zoo) 52 of 64 (0.70). Measured, last checkpoint (chosen drop / reference NLL; rejected/chosen):
    * tiny zoo: healthy 1.3 (2.3), label_noise 1.05 (1.4), length_exploitation 1.4 (8.4), likelihood_displacement
      8.9 (1.6), over_optimization 16.5 (1.9), overfitting 4.1 (1.4); the same runs fire as with the old -1 nat;
    * SmolLM2 zoo (16 held-out pairs): healthy, length_exploitation and label_noise ~0 (|drop| <= 0.004x: chosen
      barely moves), likelihood_displacement 0.064 (0.89; fell on 12 of 16 pairs, Wilson low 0.51: LoRA for 16
      steps at lr 2e-3 displaced little, see examples/zoo/README.md), over_optimization 2.12 (1.68; 16 of 16,
      low 0.81): fires, listed after DPO102; mode_collapse: chosen ROSE (+0.65x, RPO).

Why it matters
    DPO only needs the chosen log-prob to rise RELATIVE to the rejected one, so both can fall. Some fall is expected
    (E[chosen log-ratio] ~ -KL(ref || policy) when the reference was SFT'd on the chosen data, Rafailov et al. 2024),
    but when chosen falls nearly as fast as rejected the mass goes somewhere else: to responses in neither set,
    sometimes of the opposite meaning (Razin et al. 2025: a refusal rate fell from 74% to 33%). Low edit-distance
    pairs ("2+2=4" vs "2+2=5") are the classic trigger (Pal et al. 2024).

Evidence
    `drift_per_token/chosen` (threshold -max_drop_ratio x the reference's NLL per chosen token; reference value:
    its value at the first checkpoint), `drift_per_token/rejected` (threshold: normal_ratio x the chosen drift) and
    `drift/chosen_fell_frac` (threshold min_fell_frac; reference value: the lower end of its Wilson interval).

Recommended fix
    Add an NLL term on the chosen responses (RPO, rpo_alpha 1, Pang et al. 2024) or use DPOP (dpop_lambda 50),
    and raise beta mildly by the measured overshoot: beta_new = beta * |chosen drift| / allowed drop (=
    max_drop_ratio x the reference's NLL per chosen token), since the
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

from dpo_doctor.metrics.proportions import wilson
from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("drift_per_token/chosen", "drift_per_token/rejected", "drift/chosen_fell_frac", "ref_logps/chosen",
         "length/chosen_mean")


def displacement_fix(beta: float, drop: float, allowed: float, unit: str) -> Recommendation:
    """Shared with DPO203 (the same problem read from the log, in summed nats)."""
    beta_new = beta * drop / allowed
    return Recommendation(
        f"Add an NLL term on chosen (RPO, rpo_alpha 1; DPOP with dpop_lambda 50 is the alternative) and raise beta "
        f"from {fmt(beta)} to {fmt(beta_new)} (= beta x chosen drop {fmt(drop)} / allowed {fmt(allowed)} {unit}).",
        beta=beta_new, variant="rpo",
        params={"rpo_alpha": 1.0, "dpop_lambda": 50.0, "chosen_drop": drop, "allowed_drop": allowed,
                "beta_old": beta})


def ref_nll_per_token(facts: RunFacts, ck) -> float | None:
    """The reference's own NLL per chosen token (nats/token): -ref_logps/chosen / mean chosen length."""
    ref_c, n = ck.get("ref_logps/chosen"), facts.data("length/chosen_mean")
    return -ref_c / n if ref_c is not None and n and ref_c < 0 else None


def fell_share_low(frac: float, n_pairs: int | None) -> float:
    """Lower end of the Wilson 95% interval of the share of pairs whose chosen fell (the point value without n)."""
    return wilson(frac * n_pairs, n_pairs)[0] if n_pairs else frac


def check(facts: RunFacts, *, max_drop_ratio: float = 2.0, min_fell_frac: float = 0.7,
          normal_ratio: float = 2.0) -> Finding | None:
    if not facts.trained:
        return None
    first, ck = facts.trained[0], facts.trained[-1]
    c, r, frac = (ck.get(k) for k in READS[:3])
    h = ref_nll_per_token(facts, ck)
    if c is None or r is None or frac is None or h is None or c >= 0:
        return None
    allowed, low = max_drop_ratio * h, fell_share_low(frac, facts.n_pairs)
    if -c <= allowed or low < min_fell_frac or r / c >= normal_ratio:
        return None
    evidence = (Evidence("drift_per_token/chosen", c, -allowed, first.get("drift_per_token/chosen")),
                Evidence("drift_per_token/rejected", r, normal_ratio * c, None),
                Evidence("drift/chosen_fell_frac", frac, min_fell_frac, low))
    message = (f"likelihood displacement at {ck.name}: the chosen log-prob fell {fmt(-c)} nats/token below the "
               f"reference, {fmt(-c / h)}x the reference's own NLL on chosen ({fmt(h)} nats/token), on "
               f"{fmt(100 * frac)}% of pairs (95% interval from {fmt(100 * low)}%), while rejected fell only "
               f"{fmt(r / c)}x as fast ({fmt(r)} nats/token); probability mass is leaving both sides.")
    return Finding(message, evidence, displacement_fix(facts.beta, -c, allowed, "nats/token"), ck.name)


def _ck(c, r, frac=1.0, ref_c=-7.5):
    return {"drift_per_token/chosen": c, "drift_per_token/rejected": r, "drift/chosen_fell_frac": frac,
            "ref_logps/chosen": ref_c}


_TINY = {"length/chosen_mean": 20.0}  # tiny zoo: the reference's NLL on chosen is 7.5 / 20 = 0.375 nats/token
EXAMPLES = (
    Example("tiny zoo likelihood_displacement: chosen -2.63, rejected -4.23 nats/token, reference NLL 0.296 "
            "(beta 0.1 x 2.63 / (2 x 0.295))",
            make_facts(_ck(-1.34, -1.92, ref_c=-8.27), _ck(-2.63, -4.23, ref_c=-8.27),
                       data={"length/chosen_mean": 28.0}, n_pairs=64), True, beta=0.445, variant="rpo"),
    Example("rejected rises while chosen falls", make_facts(_ck(-1.5, 0.2, 0.95), data=_TINY), True),
    Example("tiny zoo healthy: chosen -0.47 (1.3x the reference's NLL), rejected -1.1 nats/token",
            make_facts(_ck(-0.47, -1.1, 0.98), data=_TINY, n_pairs=64), False),
    Example("tiny zoo label_noise: chosen -0.39 (1.05x the reference's NLL), rejected -0.54: both fall, a little",
            make_facts(_ck(-0.39, -0.54, 0.97, ref_c=-8.16), data={"length/chosen_mean": 22.3}, n_pairs=64), False),
    Example("large drop but rejected falls 8x faster (normal dynamics)", make_facts(_ck(-1.2, -9.7), data=_TINY),
            False),
    Example("drop on only half of the pairs", make_facts(_ck(-1.5, -2.0, 0.5), data=_TINY), False),
    Example("every pair of 8 fell: the Wilson interval reaches down to 0.68, too few pairs to call it 'most'",
            make_facts(_ck(-1.5, -2.0, 1.0), data=_TINY, n_pairs=8), False),
    Example("no chosen length: nothing to scale the drop by", make_facts(_ck(-2.6, -4.2)), False),
)

RULE = Rule("DPO106", "likelihood-displacement", "likelihood_displacement", "warning", check, __doc__, EXAMPLES,
            reads=READS)
