"""DPO110 capability-regression: the checkpoint answers verifiable prompts worse than the reference.

What it detects
    On a verifiable probe suite (`--probe-suite arithmetic|format|multiple_choice` or a user's suite with answers),
    the first trained checkpoint whose task accuracy is significantly below the reference's on the same prompts:
    the paired per-prompt difference (`task/accuracy_vs_ref`) is at least `min_drop` (5 points) down and the exact
    sign test over prompts against the reference (`task/accuracy_vs_ref_p`, dpo_doctor/metrics/paired.py: the
    paired test every quality rule and the pick use) gives p < 0.05, so a drop that a few prompts flipping by chance
    could explain never fires it (reports without the p-value: the upper end of the Student-t 95% interval,
    `task/accuracy_vs_ref_high`, below 0). Needs at least `min_prompts` (10) prompts.

    Why it transfers: a paired test on the same prompts against the run's own reference is in the suite's units
    (share of answers right) whatever the model. Measured on the SmolLM2 zoo (16 held-out arithmetic prompts, 5
    answers each, reference 0.19): healthy 0.20 / 0.31, mode_collapse 0.31 / 0.39, label_noise 0.18 / 0.20 (no
    drop); likelihood_displacement 0.03 / 0.00 and over_optimization 0.00 / 0.00 fire, listed after their cause;
    length_exploitation 0.13 / 0.10 is 6-9 points down but its interval crosses 0 on 16 prompts (not fired). On the
    tiny zoo a suite of its own task makes this rule fire on nearly every run, the healthy one included (0.61 ->
    0.27-0.42 right within 9): DPO there does cost task accuracy, which is why the tiny zoo's calibration scans run
    without a suite (examples/zoo/README.md).

Why it matters
    Preference tuning can buy its reward with capability (the "alignment tax"): likelihood displacement moves mass
    to unintended answers (Razin et al. 2025), and DPO without an NLL term lowers the likelihood of correct
    answers on reasoning data (Pang et al. 2024: the NLL term is "crucial"; Pal et al. 2024 on low-edit-distance
    math pairs). Implicit-reward accuracy does not show it (Rafailov et al. 2024): only checked answers do.

Evidence
    `task/accuracy` at the first regressed checkpoint (reference value: the reference's accuracy) and
    `task/accuracy_vs_ref` there (threshold: -min_drop), with the interval's upper end.

Recommended fix
    Ship the last checkpoint without a significant drop (`params.last_ok_step`; None when the first checkpoint
    already regressed). For the next run add an NLL term on the chosen answers (RPO, alpha 1; TRL `rpo_alpha=1.0`)
    or DPOP's penalty, mix in SFT data for the lost skill, lower the learning rate or raise beta.

References
    Pang et al. 2024 (RPO: Iterative Reasoning Preference Optimization, arXiv:2404.19733); Pal, Karkhanis, Dooley,
    Roberts, Naidu, White 2024 (Smaug / DPOP, arXiv:2402.13228); Razin, Malladi, Bhaskar, Chen, Arora, Hanin 2025
    (Unintentional Unalignment: Likelihood Displacement in DPO, ICLR, arXiv:2410.08847); Rafailov, Chittepu, Park et
    al. 2024 (Scaling Laws for Reward Model Overoptimization in DAAs, arXiv:2406.02900); Rafailov, Hejna, Park, Finn
    2024 (From r to Q*, arXiv:2404.12358); Feng, Qin, Huang, Zhang, Lei 2024 (Towards Analyzing and Understanding
    the Limitations of DPO, arXiv:2404.04626); Shi, Land, Locatelli, Geist, Bartolo 2024 (Understanding Likelihood
    Over-optimisation in DAAs, arXiv:2410.11677); Liu et al. 2024 (Your SFT Loss is Implicitly an Adversarial
    Regularizer, arXiv:2405.16436).
"""

from __future__ import annotations

from dpo_doctor.rules.records import (CheckpointFacts, Evidence, Example, Finding, Recommendation, RunFacts, Rule,
                                      fmt, make_facts)

READS = ("task/accuracy", "task/accuracy_vs_ref", "task/accuracy_vs_ref_high", "task/accuracy_vs_ref_p",
         "task/n_prompts")


def _regressed(c: CheckpointFacts, min_drop: float, min_prompts: float) -> bool:
    """Down by min_drop and significantly so: the exact sign test over prompts (metrics/paired.py, the test every
    quality rule uses); the Student-t interval only for reports scanned before the sign test was recorded."""
    diff, high, n = c.get("task/accuracy_vs_ref"), c.get("task/accuracy_vs_ref_high"), c.get("task/n_prompts")
    p = c.get("task/accuracy_vs_ref_p")
    significant = p < 0.05 if p is not None else high is not None and high < 0
    return diff is not None and n is not None and n >= min_prompts and diff <= -min_drop and significant


def check(facts: RunFacts, *, min_drop: float = 0.05, min_prompts: float = 10) -> Finding | None:
    bad = [c for c in facts.trained if _regressed(c, min_drop, min_prompts)]
    if not bad:
        return None
    first = bad[0]
    earlier = [c for c in facts.trained if c.step < first.step and c.get("task/accuracy") is not None]
    ok = earlier[-1] if earlier else None
    acc, ref = first.get("task/accuracy"), facts.ref("task/accuracy")
    diff, high = first.get("task/accuracy_vs_ref"), first.get("task/accuracy_vs_ref_high")
    evidence = (Evidence("task/accuracy", acc, None, ref),
                Evidence("task/accuracy_vs_ref", diff, -min_drop, 0.0))
    was = f" vs the reference's {fmt(ref)}" if ref is not None else ""
    later = f"; {len(bad) - 1} later checkpoint(s) too" if len(bad) > 1 else ""
    p = first.get("task/accuracy_vs_ref_p")
    test = f"paired sign test p={p:.2g}" if p is not None else f"95% interval up to {fmt(100 * high)}"
    message = (f"capability regression from {first.name}: task accuracy {fmt(acc)}{was} on "
               f"{int(first.get('task/n_prompts'))} verifiable prompts ({fmt(100 * diff)} points, {test}){later}.")
    stop = f"Ship {ok.name} (the last without a significant drop)" if ok else "No trained checkpoint keeps the skill"
    fix = Recommendation(
        f"{stop}; for the next run add an NLL term on the chosen answers (RPO, alpha 1: TRL rpo_alpha=1.0) or mix "
        f"in SFT data for the lost skill, and lower the learning rate or raise beta.",
        variant="rpo", params={"rpo_alpha": 1.0, "last_ok_step": ok.step if ok else None,
                               "first_regressed_step": first.step})
    # a fall DPO111 or DPO102/DPO106 explain (over-optimization, displacement) is their symptom: listed after them
    return Finding(message, evidence, fix, first.name, explained_by=("over_optimization", "likelihood_displacement"))


def _ck(acc, diff, high, n=40, p=None):
    return {"task/accuracy": acc, "task/accuracy_vs_ref": diff, "task/accuracy_vs_ref_high": high,
            "task/n_prompts": n, **({"task/accuracy_vs_ref_p": p} if p is not None else {})}


_REF = {"task/accuracy": 0.70}
EXAMPLES = (
    Example("arithmetic falls 0.70 -> 0.45 from step 200 (interval up to -12 points): ship step 100",
            make_facts(_ck(0.68, -0.02, 0.06), _ck(0.45, -0.25, -0.12), _ck(0.30, -0.40, -0.27), reference=_REF),
            True, variant="rpo"),
    Example("a 10-point drop whose interval crosses 0 (noise on 40 prompts)",
            make_facts(_ck(0.60, -0.10, 0.02), reference=_REF), False),
    Example("significant but tiny (2 points)", make_facts(_ck(0.68, -0.02, -0.001), reference=_REF), False),
    Example("too few prompts", make_facts(_ck(0.2, -0.5, -0.1, n=4), reference=_REF), False),
    Example("no verifiable suite", make_facts({"rewards/accuracies": 0.9}), False),
    Example("sign test: 22 points down, 12 prompts worse and 1 better of 24 (p = 2 x 14/8192 = 0.0034) although the "
            "t interval crosses 0", make_facts(_ck(0.32, -0.22, 0.01, n=24, p=0.0034), reference=_REF), True,
            variant="rpo"),
    Example("sign test: 10 points down, 5 prompts worse and 2 better (p = 0.45)",
            make_facts(_ck(0.60, -0.10, -0.01, p=0.453), reference=_REF), False),
)

RULE = Rule("DPO110", "capability-regression", "capability_regression", "warning", check, __doc__, EXAMPLES,
            reads=READS)
