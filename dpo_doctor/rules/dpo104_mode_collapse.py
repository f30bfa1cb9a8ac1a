"""DPO104 mode-collapse: the policy's samples for one prompt have become near-copies of each other.

What it detects
    At the last checkpoint, per-input diversity of sampled answers falls more than `max_drop` (33%) relative to
    the reference's own samples at the same sample count: `gen/ead_per_input` (expectation-adjusted distinct
    n-grams, length-corrected); `gen/distinct_2` is used only when EAD is missing, since plain distinct-n also falls
    when answers merely get longer. A fall of across-input EAD (`gen/ead_across_input`) is reported alongside:
    the same answer whatever the prompt.

    Calibrated on the zoo (last checkpoint, 32 prompts x 4 samples): the drop of `gen/ead_per_input` is 5% on
    healthy, 47% on the injected mode_collapse run, and up to 21% on runs without collapse (underfitting 21%,
    over_optimization 19%, label_noise 17%): preference tuning lowers diversity somewhat everywhere (Kirk et al.).
    The literature's 25% left only 4 points above those, so the default is a third (33%), midway.
    On the SmolLM2 zoo (LoRA, 16 prompts x 4 samples, reference EAD 0.876) the same default holds: healthy -4%,
    label_noise 0%, length_exploitation and likelihood_displacement above the reference, mode_collapse (one templated
    chosen answer, RPO, 32 steps) -50% (-42% at its first checkpoint; the 16-step build of the same injection reached
    only -26% and was not a collapse by this rule), over_optimization -40% (fires; listed before DPO102, whose fix, raise beta, is the wrong one for a collapse). Why it
    transfers: EAD corrects distinct n-grams for length and sample count, so the drop is a ratio of like with like
    on any tokenizer; 33% sits between the largest drop of a run without collapse on either zoo (21%, tiny
    underfitting) and the smallest injected one (47% tiny, 50% SmolLM2).

Why it matters
    Preference tuning cuts output diversity, most of all per input (Kirk et al. 2024); reverse-KL DPO is the most
    mode-seeking of the f-divergences (Wang et al. 2024). A collapsed policy repeats one canned answer and loses
    the spread that sampling, best-of-n and later RL rounds rely on.

Evidence
    `gen/ead_per_input` (or `gen/distinct_2`) at the last checkpoint, threshold (1 - max_drop) x the reference's
    value, reference value the reference's; `gen/ead_across_input` likewise when it also fell.

Recommended fix
    f-DPO with the Jensen-Shannon divergence (or alpha-divergence, alpha 0.5), which trades a little accuracy for
    much more diversity (Wang et al. 2024), and fewer epochs or a lower learning rate: `params.last_diverse_step`
    is the last checkpoint whose EAD stayed within the allowed drop. Do NOT raise beta for this: Kirk et al. found
    that a stronger KL penalty gave less diversity, not more.

References
    Kirk, Mediratta, Nalmpantis, Luketina, Hambro, Grefenstette, Raileanu 2024 (Understanding the Effects of RLHF on
    LLM Generalisation and Diversity, ICLR, arXiv:2310.06452); Wang, Jiang, Yang, Liu, Chen 2024 (f-DPO: Beyond
    Reverse KL, ICLR, arXiv:2309.16240); Liu et al. 2022 (EAD, expectation-adjusted distinct n-grams, ACL); Li et
    al. 2016 (distinct-n).
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("gen/ead_per_input", "gen/distinct_2", "gen/ead_across_input")


def _drop(value: float | None, ref: float | None) -> float | None:
    return None if value is None or ref is None or ref <= 0 else 1.0 - value / ref


def _last_diverse(facts: RunFacts, key: str, ref: float, max_drop: float):
    ok = [c for c, v in facts.series(key) if c.step > 0 and v >= (1 - max_drop) * ref]
    return ok[-1].step if ok else None


def check(facts: RunFacts, *, max_drop: float = 0.33) -> Finding | None:
    ck = facts.last
    if ck is None:
        return None
    key = "gen/ead_per_input" if ck.get("gen/ead_per_input") is not None else "gen/distinct_2"
    value, ref = ck.get(key), facts.ref(key)
    drop = _drop(value, ref)
    if drop is None or drop <= max_drop:
        return None
    evidence = [Evidence(key, value, (1 - max_drop) * ref, ref)]
    across, ref_across = ck.get("gen/ead_across_input"), facts.ref("gen/ead_across_input")
    across_drop = _drop(across, ref_across)
    extra = ""
    if across_drop is not None and across_drop > max_drop:
        evidence.append(Evidence("gen/ead_across_input", across, (1 - max_drop) * ref_across, ref_across))
        extra = f"; across prompts too ({fmt(100 * across_drop)}% lower): similar answers whatever the prompt"
    keep = _last_diverse(facts, key, ref, max_drop)
    fix = Recommendation(
        "Use f-DPO with the JS divergence (or alpha 0.5) and fewer epochs or a lower LR"
        + (f" (diversity held until step {keep})" if keep is not None else "")
        + "; do not raise beta: Kirk et al. found stronger KL penalties reduce diversity further.",
        variant="f_dpo", params={"f_divergence": "js_divergence", "f_alpha": 0.5, "last_diverse_step": keep,
                                 "diversity_drop": drop})
    message = (f"mode collapse at {ck.name}: per-prompt diversity ({key}) is {fmt(100 * drop)}% below the "
               f"reference's ({fmt(value)} vs {fmt(ref)}){extra}.")
    return Finding(message, tuple(evidence), fix, ck.name)


_REF = {"gen/ead_per_input": 0.80, "gen/ead_across_input": 0.70, "gen/distinct_2": 0.9}
EXAMPLES = (
    Example("EAD per input halves, across input too (canned answers)",
            make_facts({"gen/ead_per_input": 0.62}, {"gen/ead_per_input": 0.35, "gen/ead_across_input": 0.2},
                       reference=_REF), True, variant="f_dpo"),
    Example("no EAD: distinct-2 falls 40%", make_facts({"gen/distinct_2": 0.54}, reference={"gen/distinct_2": 0.9}),
            True),
    Example("zoo underfitting: EAD 21% below the reference's (ordinary tuning, not collapse)",
            make_facts({"gen/ead_per_input": 0.551}, reference={"gen/ead_per_input": 0.695}), False),
    Example("longer answers lower distinct-2 but EAD holds (length, not collapse)",
            make_facts({"gen/ead_per_input": 0.74, "gen/distinct_2": 0.5}, reference=_REF), False),
    Example("no generation probes", make_facts({"rewards/accuracies": 0.9}), False),
)

RULE = Rule("DPO104", "mode-collapse", "mode_collapse", "warning", check, __doc__, EXAMPLES, reads=READS)
