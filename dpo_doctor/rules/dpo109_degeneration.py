"""DPO109 degeneration: the checkpoint's answers loop, repeating themselves until the token limit.

What it detects
    The first trained checkpoint whose share of looping answers (`gen/degen/frac`; an answer loops when half or
    more of its token 4-grams repeat an earlier one, or it repeats a span of 32+ tokens:
    dpo_doctor/metrics/degeneration.py) rises above the reference's on the same prompts by a margin that holds
    against sampling noise: all of
    * at least `min_share` (10%) of its answers loop,
    * at least `min_extra` (3) more looping answers than the reference's (`gen/degen/count`, same prompts and
      sample count), so one or two unlucky samples never fire it,
    * a one-sided Fisher exact test of the two counts gives p <= `max_pvalue` (0.05).
    The last trained checkpoint must loop too: a transient loop that training recovers from is not flagged (the
    full tiny zoo's healthy run loops in 31 of 160 answers at checkpoint-32, at the peak learning rate, then in 1,
    1 and 0; the CI slice, which keeps only checkpoints 64 and 128, never saw it). Comparing with the reference's
    own samples keeps a model that always looped a little from firing. Broken
    characters (`gen/degen/broken_frac`: answers with more than 1% U+FFFD / control characters) are reported with
    a finding but do not fire one alone.

    Calibrated on the zoo (the CI slice: 16 prompts x (4 samples + greedy) = 80 answers, 64 new tokens, checkpoints
    every 64 steps): loops in 0 of the reference's answers, 0-1 in healthy's
    checkpoints, 0 in length_exploitation's, and 3-56 in over_optimization's (12 at its first checkpoint, where
    the rule fires, 56 at its second: "once once once ..."), so the defaults (10%, 3 more, p 0.05) sit clear of
    healthy. Broken characters do not separate: the byte-level tiny model samples them from its tails in every
    trained run (reference 3 of 80, healthy 12-21, length_exploitation 31-35, over_optimization 0-32), which is
    why they only add evidence.
    SmolLM2 zoo (16 prompts x 5 answers, 40 new tokens, a real 49k-token vocabulary): 0 looping answers in the
    reference's and in every run's last checkpoint but over_optimization's (12 of 80, 15%, repeated 4-gram rate
    0.26 vs 0.004-0.033 elsewhere: fires, after DPO102); no broken characters anywhere. Why the defaults transfer:
    a loop is defined on the model's own tokens relative to the answer (half its 4-grams repeated, or a 32-token
    repeated span) and judged against the reference's samples of the same prompts with an exact test, so neither
    the vocabulary nor the answer length sets the line.

Why it matters
    A policy pushed far from its reference (beta too low, learning rate too high, too many steps) starts to repeat
    itself and to emit broken text before its implicit-reward metrics look wrong: reward accuracy and margins keep
    rising while the generations degrade (SimPO README, princeton-nlp/SimPO: LR 1e-5 "yields incoherent or
    repetitive text"; Rafailov, Chittepu, Park et al. 2024, arXiv:2406.02900). Unlikelihood-style objectives without
    DPO's weighting degenerate the same way (Rafailov et al. 2023, gradient analysis). Loops also inflate length and
    KL, so DPO101/DPO102 may fire on the same run: this finding is listed after over-optimization, its usual cause.

Evidence
    `gen/degen/frac` at the first looping checkpoint (threshold `min_share`, reference value the reference's
    share), `gen/degen/count` there (threshold the reference's count + `min_extra`), the mean repeated 4-gram rate
    there against the reference's, and `gen/degen/broken_frac` when answers also break into invalid characters.

Recommended fix
    Ship the last checkpoint before the loops start (`params.last_clean_step`; None when the first trained
    checkpoint already degenerates). For the next run lower the learning rate or raise beta, or add an NLL term on
    the chosen answers (RPO: DPO + alpha x NLL(y_w), alpha 1, TRL `rpo_alpha=1.0`), which keeps the chosen
    likelihood up and the text fluent (Pang et al. 2024).

References
    Pang et al. 2024 (RPO: Iterative Reasoning Preference Optimization, arXiv:2404.19733); Liu et al. 2024 (Your SFT
    Loss is Implicitly an Adversarial Regularizer, arXiv:2405.16436); Meng, Xia, Chen 2024 (SimPO, arXiv:2405.14734)
    and its README, princeton-nlp/SimPO (LR warnings: LR 1e-5 yields incoherent or repetitive text); Rafailov,
    Chittepu, Park et al. 2024 (Scaling Laws for Reward Model Overoptimization in DAAs, arXiv:2406.02900); Rafailov
    et al. 2023 (DPO, arXiv:2305.18290, section 4); Holtzman et al. 2020 (neural text degeneration).
"""

from __future__ import annotations

from dpo_doctor.metrics.proportions import fisher_greater
from dpo_doctor.rules.records import (CheckpointFacts, Evidence, Example, Finding, Recommendation, RunFacts, Rule,
                                      fmt, make_facts)

READS = ("gen/degen/frac", "gen/degen/count", "gen/degen/n", "gen/degen/repeat_4gram_rate",
         "gen/degen/broken_frac")


def _degenerate(c: CheckpointFacts, ref_count: float, ref_n: float, min_share: float, min_extra: float,
                max_pvalue: float) -> bool:
    count, n = c.get("gen/degen/count"), c.get("gen/degen/n")
    if count is None or not n:
        return False
    return (count / n >= min_share and count - ref_count * n / ref_n >= min_extra
            and fisher_greater(int(count), int(n), int(ref_count), int(ref_n)) <= max_pvalue)


def _how(facts: RunFacts, c: CheckpointFacts) -> str:
    """The repetition, and broken characters too: whichever rose above the reference's."""
    parts = []
    for key, what in (("gen/degen/repeat_4gram_rate", "repeated 4-gram rate"),
                      ("gen/degen/broken_frac", "answers with broken characters")):
        value, ref = c.get(key), facts.ref(key)
        if value is not None and ref is not None and value > ref:
            parts.append(f"{what} {fmt(value)} vs {fmt(ref)}")
    return f" ({'; '.join(parts)})" if parts else ""


def check(facts: RunFacts, *, min_share: float = 0.1, min_extra: float = 3, max_pvalue: float = 0.05
          ) -> Finding | None:
    ref_count, ref_n = facts.ref("gen/degen/count"), facts.ref("gen/degen/n")
    if ref_count is None or not ref_n:
        return None
    bad = [c for c in facts.trained if _degenerate(c, ref_count, ref_n, min_share, min_extra, max_pvalue)]
    if not bad or bad[-1] is not facts.trained[-1]:
        return None  # none, or a transient loop the run recovered from: its last checkpoint answers cleanly
    first = bad[0]
    earlier = [c for c in facts.trained if c.step < first.step]
    clean = earlier[-1] if earlier else None
    frac, count, n = first.get("gen/degen/frac"), first.get("gen/degen/count"), first.get("gen/degen/n")
    ref_frac = ref_count / ref_n
    evidence = (Evidence("gen/degen/frac", frac, min_share, ref_frac),
                Evidence("gen/degen/count", count, ref_count + min_extra, ref_count),
                *(Evidence(k, first.get(k), None, facts.ref(k))
                  for k in ("gen/degen/repeat_4gram_rate", "gen/degen/broken_frac") if first.get(k) is not None))
    later = f"; {len(bad) - 1} later checkpoint(s) too" if len(bad) > 1 else ""
    message = (f"degeneration from {first.name}: {fmt(100 * frac)}% of its answers loop ({int(count)} of "
               f"{int(n)}) vs {fmt(100 * ref_frac)}% of the reference's{_how(facts, first)}{later}.")
    stop = f"Ship {clean.name} (the last checkpoint before the loops)" if clean else \
        "No trained checkpoint is clean: retrain"
    fix = Recommendation(
        f"{stop}; for the next run lower the learning rate or raise beta, or add an NLL term on the chosen answers "
        f"(RPO, alpha 1: TRL rpo_alpha=1.0) to keep the text fluent.",
        variant="rpo", params={"rpo_alpha": 1.0, "last_clean_step": clean.step if clean else None,
                               "first_degenerate_step": first.step})
    return Finding(message, evidence, fix, first.name, explained_by=("over_optimization",))


def _ck(count, n=128, rate=0.1, broken=0.0):
    return {"gen/degen/count": count, "gen/degen/n": n, "gen/degen/frac": count / n,
            "gen/degen/repeat_4gram_rate": rate, "gen/degen/broken_frac": broken}


_REF = _ck(4, rate=0.08, broken=0.03)
EXAMPLES = (
    Example("loops start at step 300 (4 -> 30 of 128 answers; Fisher p < 1e-5): ship step 200",
            make_facts(_ck(5), _ck(6), _ck(30, rate=0.45), _ck(60, rate=0.7), reference=_REF), True, variant="rpo"),
    Example("zoo over_optimization: 12 of 80 answers loop at the first checkpoint, 56 at the second (reference 0)",
            make_facts(_ck(12, n=80, rate=0.14), _ck(56, n=80, rate=0.6), reference=_ck(0, n=80, broken=0.04)),
            True),
    Example("zoo healthy: broken characters alone (21 of 80 vs 3) and 1 loop do not fire",
            make_facts(_ck(1, n=80, broken=0.26), reference=_ck(0, n=80, broken=0.04)), False),
    Example("full tiny zoo healthy: 31 of 160 loop at checkpoint-32, then 1, 1, 0: recovered, not flagged",
            make_facts(_ck(31, n=160, rate=0.25), _ck(1, n=160), _ck(1, n=160), _ck(0, n=160),
                       reference=_ck(0, n=160)), False),
    Example("noise: 9 vs the reference's 4 of 128 (p 0.13)", make_facts(_ck(6), _ck(9), reference=_REF), False),
    Example("a looping reference: 40 vs 36 of 128 (both tiny models repeat themselves)",
            make_facts(_ck(40), reference=_ck(36)), False),
    Example("few probes: 3 of 8 vs 0 of 8 is 3 more but p 0.1", make_facts(_ck(3, n=8), reference=_ck(0, n=8)),
            False),
    Example("no generation probes", make_facts({"rewards/accuracies": 0.9}), False),
)

RULE = Rule("DPO109", "degeneration", "degeneration", "warning", check, __doc__, EXAMPLES, reads=READS)
