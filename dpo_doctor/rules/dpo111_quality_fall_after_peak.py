"""DPO111 quality-fall-after-peak: measured answer quality fell significantly after its peak checkpoint.

What it detects
    With a quality signal (the judge's win rate from `--judge`, else verifiable task accuracy from a suite with
    answers: the default suite, `--probe-suite` or a user's), the checkpoint with the most quality (ties: less KL,
    then earlier) is the peak; when the last checkpoint scores lower by at least `min_drop` and an exact sign test
    over the probe prompts (the same prompts, paired: dpo_doctor/metrics/paired.py) says so at p < 0.05 after a
    Bonferroni correction for having chosen the peak among the checkpoints (p x the number of checkpoints before the
    last), the fall is a finding. Its kind names the mechanism the run's own measurements support:
    * likelihood_displacement when the margin gained is under `displaced_margin_share` of what the chosen answers
      lost (DPO102's signature: the probability went to answers in neither set), or, without a KL rise, when the
      chosen answers fell below the reference's and below the peak's;
    * over_optimization when the sampled KL at the last checkpoint is at least `kl_rise` x the peak's (quality fell
      while KL kept rising: the hump of Rafailov et al. 2024);
    * capability_regression otherwise.
    No threshold is in model units: the test is in prompts, the KL rise relative to the run's own peak.

Why it matters
    Quality vs KL is hump-shaped for DPO (Rafailov et al. 2024): past the peak, implicit-reward accuracy and
    margins keep rising while answers get worse, so the last checkpoint is often not the one to ship. The pick
    (`best_checkpoint`) and the diagnoses must tell the same story: this finding is where the pick's "quality fell
    past it" comes from.

Evidence
    The signal at the last checkpoint (reference value: the peak's), the sign test's p-value (threshold 0.05,
    after the correction) and `gen/kl_mean` at the last checkpoint (reference value: the peak's).

Recommended fix
    Ship the peak (`params.ship_step`; best_checkpoint ships it). For the next run: over-optimization: raise beta
    or train fewer steps; likelihood displacement: add an NLL term on the chosen answers (RPO, TRL
    `rpo_alpha=1.0`) or DPOP, and check minimal-edit pairs; capability regression: mix in SFT data for the lost
    skill, lower the learning rate.

References
    Rafailov, Chittepu, Park et al. 2024 (Scaling Laws for Reward Model Overoptimization in DAAs, arXiv:2406.02900);
    Razin et al. 2025 (Unintentional Unalignment: Likelihood Displacement in DPO, arXiv:2410.08847); Pal et al. 2024
    (DPOP, arXiv:2402.13228); Pang et al. 2024 (RPO, arXiv:2404.19733).
"""

from __future__ import annotations

from dpo_doctor.rules.dpo102_over_optimization import displaced
from dpo_doctor.rules.quality import compare, peak, signal
from dpo_doctor.rules.records import (CheckpointFacts, Evidence, Example, Finding, Recommendation, RunFacts, Rule,
                                      fmt, make_facts)

READS = ("task/accuracy", "judge/win_rate", "gen/kl_mean", "rewards/margins", "logps/chosen", "ref_logps/chosen")
FIXES = {
    "over_optimization": "raise beta or train fewer steps (IPO and online DPO over-optimize less)",
    "likelihood_displacement": "add an NLL term on the chosen answers (RPO: TRL rpo_alpha=1.0) or DPOP's penalty, "
                               "and look for pairs whose chosen and rejected answers differ by a token or two",
    "capability_regression": "mix in SFT data for the lost skill and lower the learning rate",
}


def mechanism(top: CheckpointFacts, last: CheckpointFacts, beta: float, kl_rise: float,
              share: float) -> tuple[str, str]:
    """(kind, the measurements behind it) of a fall from `top` to `last`."""
    kl0, kl1 = top.get("gen/kl_mean"), last.get("gen/kl_mean")
    lp0, lp1, ref_lp = top.get("logps/chosen"), last.get("logps/chosen"), last.get("ref_logps/chosen")
    moved = displaced(last, beta, share)
    if moved is not None:
        return "likelihood_displacement", (f"the margin gained {fmt(moved[0])} nats while the chosen answers lost "
                                           f"{fmt(moved[1])}: the probability went to answers in neither set")
    rose = kl0 is not None and kl1 is not None and kl1 >= kl_rise * max(kl0, 1e-9)
    if rose:
        return "over_optimization", f"sampled KL rose from {fmt(kl0)} to {fmt(kl1)} nats with it"
    if None not in (lp0, lp1, ref_lp) and lp1 < lp0 and lp1 < ref_lp:
        return "likelihood_displacement", (f"the chosen answers' log-probability fell from {fmt(lp0)} to {fmt(lp1)} "
                                           f"(reference {fmt(ref_lp)})")
    return "capability_regression", "without a KL rise or falling chosen answers to explain it"


def check(facts: RunFacts, *, min_drop: float = 0.02, kl_rise: float = 1.5,
          displaced_margin_share: float = 0.15) -> Finding | None:
    found = signal(facts)
    if found is None:
        return None
    key, label = found
    cands = [c for c in facts.trained if c.get(key) is not None]
    if len(cands) < 2:
        return None
    top, last = peak(cands, key), cands[-1]
    if last is top:
        return None
    test = compare(last, top, key)
    if test is None:
        return None
    p = min(1.0, test.p_value * (len(cands) - 1))  # the peak was chosen among the checkpoints before the last
    if p >= 0.05 or test.diff > -min_drop:
        return None
    kind, why = mechanism(top, last, facts.beta, kl_rise, displaced_margin_share)
    message = (f"{kind.replace('_', ' ')}: {label} fell from {fmt(top.get(key))} at {top.name} to "
               f"{fmt(last.get(key))} at {last.name} ({fmt(100 * test.diff)} points; worse on {test.behind} and "
               f"better on {test.ahead} of {test.n} prompts, sign test p={p:.2g} corrected for {len(cands) - 1} "
               f"checkpoints); {why}.")
    evidence = (Evidence(key, last.get(key), None, top.get(key)), Evidence("paired/p_value", p, 0.05, None),
                Evidence("gen/kl_mean", last.get("gen/kl_mean"), None, top.get("gen/kl_mean")))
    fix = Recommendation(f"Ship {top.name} (the quality peak: {label} {fmt(top.get(key))}); for the next run "
                         f"{FIXES[kind]}.", params={"ship_step": top.step, "mechanism": kind, "p_value": p})
    # a collapse onto one answer (DPO104) is the more specific reading of a KL-driven fall: listed first (DPO102)
    return Finding(message, evidence, fix, last.name, kind=kind,
                   explained_by=("mode_collapse",) if kind == "over_optimization" else ())


def _scores(n_ahead: int, n_same: int, n_behind: int, hi: float, lo: float, same: float) -> list[float]:
    return [hi] * n_ahead + [same] * n_same + [lo] * n_behind


_PEAK = _scores(12, 11, 1, 0.8, 0.2, 0.5)  # 24 prompts: the peak's per-prompt shares
_LAST = [0.0] * 12 + [0.5] * 11 + [0.4]  # against the peak: 12 prompts lower, 11 tied, 1 higher


def _run(kl_last: float, lp_last: float = -30.0, margin_last: float = 3.0):
    return make_facts({"task/accuracy": 0.5, "gen/kl_mean": 10.0, "logps/chosen": -30.0, "ref_logps/chosen": -30.0,
                       "rewards/margins": 1.0},
                      {"task/accuracy": sum(_PEAK) / 24, "gen/kl_mean": 12.0, "logps/chosen": -30.5,
                       "ref_logps/chosen": -30.0, "rewards/margins": 2.0},
                      {"task/accuracy": sum(_LAST) / 24, "gen/kl_mean": kl_last, "logps/chosen": lp_last,
                       "ref_logps/chosen": -30.0, "rewards/margins": margin_last},
                      per_prompt=[{"task/accuracy": [0.5] * 24}, {"task/accuracy": _PEAK}, {"task/accuracy": _LAST}])


EXAMPLES = (
    Example("quality 0.637 -> 0.246 on 24 prompts (12 worse, 1 better: p = 2 x 14/8192 = 0.0034, x 2 checkpoints) "
            "while KL rose 12 -> 40 nats: over-optimization", _run(40.0), True),
    Example("the same fall with flat KL and steady chosen answers: capability regression", _run(12.5), True),
    Example("the same fall, chosen answers lost 12 nats for 0.5 nats of margin gained: likelihood displacement",
            _run(40.0, lp_last=-42.0, margin_last=0.05), True),
    Example("one checkpoint of quality only: nothing to compare", make_facts({"task/accuracy": 0.4}), False),
    Example("a fall of 3 prompts of 24 (p=0.25): within noise",
            make_facts({"task/accuracy": 0.6}, {"task/accuracy": 0.55},
                       per_prompt=[{"task/accuracy": [1.0] * 3 + [0.5] * 21},
                                   {"task/accuracy": [0.6] * 3 + [0.5] * 21}]), False),
    Example("no quality signal: nothing to say", make_facts({"rewards/accuracies": 0.9}, {"rewards/accuracies": 0.8}),
            False),
)

RULE = Rule("DPO111", "quality-fall-after-peak", "capability_regression", "warning", check, __doc__, EXAMPLES,
            reads=READS)
