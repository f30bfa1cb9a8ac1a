"""Shared by the quality-based rules and the pick (best.py): which quality signal a scan measured, paired
comparisons of two checkpoints on it, and the pick by the quality-vs-KL hump when there is no signal.

One function each, so DPO102, DPO110, DPO111 and `best_checkpoint` can never disagree on what "better", "within
noise" or "the checkpoint to ship" means.
"""

from __future__ import annotations

from typing import Sequence

from dpo_doctor.metrics.paired import Paired, paired
from dpo_doctor.rules.records import CheckpointFacts, RunFacts, fmt

QUALITY = (("judge/win_rate", "judge win rate against the reference"), ("task/accuracy", "verifiable task accuracy"))
GAIN_SHARE = 0.8  # "most of the run's gain": the earliest checkpoint reaching 80% of the largest accuracy gain
KL_FACTOR = 4.0  # "before KL grows by a large factor": at most 4x the KL of the run's first scored checkpoint


Limit = tuple[str, float, str, str, str]  # (metric, bound, "max"|"min", what it protects, the kind that sets it)


def ship_limits(facts: RunFacts) -> list[Limit]:
    """What a checkpoint to ship must not break: DPO101's length limit (`gen/length_ratio`) and DPO104's diversity
    floor (`gen/ead_per_input` x the reference's), at those rules' defaults. best.py applies the ones whose kind was
    found; DPO102 keeps its checkpoint to ship within all of them, so the two never name different checkpoints."""
    from dpo_doctor.rules.dpo101_length_exploitation import RULE as length_rule
    from dpo_doctor.rules.dpo104_mode_collapse import RULE as collapse_rule

    ratio = length_rule.params["max_length_ratio"]
    limits: list[Limit] = [("gen/length_ratio", ratio, "max", f"a length ratio of {fmt(ratio)}",
                            "length_exploitation")]
    ref_ead = facts.ref("gen/ead_per_input")
    if ref_ead:
        floor = (1 - collapse_rule.params["max_drop"]) * ref_ead
        limits.append(("gen/ead_per_input", floor, "min", "the allowed diversity drop", "mode_collapse"))
    return limits


def within(c: CheckpointFacts, limit: Limit) -> bool | None:
    """Whether the checkpoint meets the limit (None when it was not measured)."""
    metric, bound, side = limit[:3]
    v = c.get(metric)
    return None if v is None else (v <= bound if side == "max" else v >= bound)


def signal(facts: RunFacts) -> tuple[str, str] | None:
    """(metric, label) of the answer-quality signal measured on trained checkpoints (judge first), or None."""
    for key, label in QUALITY:
        if any(c.get(key) is not None for c in facts.checkpoints):
            return key, label
    return None


def quality_measured(facts: RunFacts) -> bool:
    return signal(facts) is not None


def compare(a: CheckpointFacts, b: CheckpointFacts, key: str) -> Paired | None:
    """Sign test over prompts of A's per-prompt scores against B's (None without per-prompt scores)."""
    sa, sb = a.scores(key), b.scores(key)
    return paired(sa, sb) if sa and sb else None


def peak(cands: Sequence[CheckpointFacts], key: str) -> CheckpointFacts:
    """The checkpoint with the most quality (ties: less KL, then the earlier step: the top of the hump)."""
    return max(cands, key=lambda c: (c.get(key), -(c.get("gen/kl_mean") or 0.0), -c.step))


def early_pick(cands: Sequence[CheckpointFacts], key: str = "rewards/accuracies", baseline: float = 0.5,
               share: float = GAIN_SHARE, kl_factor: float = KL_FACTOR) -> tuple[CheckpointFacts, str]:
    """Without a quality signal: (checkpoint, why) by the quality-vs-KL hump (Rafailov et al. 2024: quality peaks
    early in KL, then falls while implicit-reward accuracy keeps rising). Among checkpoints whose sampled KL stays
    within `kl_factor` x the KL of the run's first scored checkpoint (all of them without KL), the earliest whose
    accuracy gain over `baseline` (0.5: a coin) reaches `share` of the largest gain among them. The limit is the
    run's own: no fixed nats."""
    cands = sorted(cands, key=lambda c: c.step)
    kls = [(c, c.get("gen/kl_mean")) for c in cands]
    first_kl = next((kl for _, kl in kls if kl is not None and kl > 0), None)
    why = ""
    if first_kl is not None:
        within = [c for c, kl in kls if kl is None or kl <= kl_factor * first_kl]
        if len(within) < len(cands):
            why = (f"KL within {kl_factor:g}x the first checkpoint's ({first_kl:.3g} nats); "
                   f"{len(cands) - len(within)} later checkpoint(s) past it")
        cands = within or cands
    best_gain = max(c.get(key) for c in cands) - baseline
    need = baseline + share * best_gain if best_gain > 0 else max(c.get(key) for c in cands)
    pick = next(c for c in cands if c.get(key) >= need - 1e-12)
    what = f"the earliest checkpoint reaching {share:.0%} of the run's largest {key} gain over {baseline:g}"
    return pick, what + (f" ({why})" if why else "")
