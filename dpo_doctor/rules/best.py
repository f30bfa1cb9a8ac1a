"""Which checkpoint to ship, and why: `report.json["best_checkpoint"]`.

With a quality signal (it outranks everything else: implicit-reward accuracy does not track win rate, Rafailov et
al. 2024): the judge's win rate against the reference (`judge/win_rate`, from `--judge`), else the accuracy on a
verifiable suite (`task/accuracy`: the default suite, `--probe-suite` or the user's). The best is the checkpoint
with the most quality (ties: less KL, then the earlier step: the top of the hump; rules/quality.py `peak`). When
DPO111 (quality-fall-after-peak) fired, its `ship_step` is the pick, and only then does the reason say that quality
fell past it (with the mechanism DPO111 named), so the pick and the diagnoses never disagree. `confidence` comes
from a paired test: the exact sign test over the probe prompts of the best against the runner-up (same prompts;
metrics/paired.py): "clear" when p < 0.05, "within noise" when not; without per-prompt scores (an old report) the
95% intervals are compared instead and the reason says so. Checkpoints from the first degenerate one on (DPO109)
are never shipped while an earlier one exists.

Without a quality signal (`confidence`: "low: no quality signal"), the pick follows what is known about DPO's
quality-vs-KL hump (Rafailov et al. 2024, arXiv:2406.02900: gold quality peaks early in KL and then falls while
implicit-reward accuracy and margins keep rising), not the highest implicit-reward accuracy:
1. rule-driven choices first: a fired DPO102 (`ship_step`: the same early pick below, among the checkpoints within
   its KL budget, else among all, leaving out collapsed or length-blown ones as step 2 does) or DPO103 (the
   held-out peak before overfitting); with a wrong reference (DPO003) those rules read reference-relative
   accuracies, so they are skipped;
2. otherwise the limits the diagnoses set: no length blow-up (`gen/length_ratio` within DPO101's limit) when
   length exploitation was found; diversity within DPO104's allowed drop when mode collapse was found; before the
   first degenerate checkpoint (DPO109); a limit no checkpoint meets is relaxed to the closest (said in the reason);
3. then, among the remaining checkpoints whose sampled KL (`gen/kl_mean`) stays within 4x the KL of the run's first
   scored checkpoint (the run's own scale, not a fixed number of nats), the EARLIEST whose held-out accuracy gain
   over a coin (0.5) reaches 80% of the largest gain among them (rules/quality.py `early_pick`): the checkpoint
   that has learned most of what the run learns while spending the least KL. With a wrong reference the
   reference-free `accuracy/ranking` (pi(chosen) > pi(rejected)) is the highest-wins key instead.
No choice (None) when nothing was trained or nothing learned: there is no checkpoint worth shipping over the
reference.
"""

from __future__ import annotations

from dpo_doctor.rules import Diagnosis
from dpo_doctor.rules.quality import QUALITY, Limit, compare, early_pick, peak, ship_limits, within
from dpo_doctor.rules.records import CheckpointFacts, RunFacts, finite, fmt


def _limits(facts: RunFacts, diagnoses: list[Diagnosis]) -> list[Limit]:
    """The ship limits (rules/quality.py) of the kinds that were found."""
    kinds = {d.kind for d in diagnoses}
    return [limit for limit in ship_limits(facts) if limit[4] in kinds]


def _value(c: CheckpointFacts, metric: str) -> float | None:
    return c.get(metric)


def _apply(cands: list[CheckpointFacts], limit: Limit) -> tuple[list[CheckpointFacts], str]:
    metric, bound, side, what, _ = limit
    measured = [c for c in cands if _value(c, metric) is not None]
    if not measured:
        return cands, ""
    ok = [c for c in measured if within(c, limit)]
    if ok:
        return ok, f"within {what}" if len(ok) < len(measured) else ""
    closest = min(measured, key=lambda c: _value(c, metric) if side == "max" else -_value(c, metric))
    return [closest], (f"no checkpoint stays within {what}; this one comes closest ({metric} "
                       f"{fmt(_value(closest, metric))})")


def _usable(c: CheckpointFacts) -> bool:
    return c.step > 0 and all(finite(v) for v in c.metrics.values() if isinstance(v, float))


def choose_best(facts: RunFacts, diagnoses: list[Diagnosis]) -> dict | None:
    """{"name", "step", "reason"} of the checkpoint to ship, or None when there is none worth shipping."""
    kinds = {d.kind for d in diagnoses}
    if "no_learning" in kinds:
        return None
    quality = _quality_choice(facts, diagnoses)
    if quality is not None:
        return quality
    key = "accuracy/ranking" if "reference_mismatch" in kinds else "rewards/accuracies"
    shipped = None if "reference_mismatch" in kinds else _rule_choice(facts, diagnoses)
    if shipped is not None:
        return shipped
    cands = [c for c in facts.checkpoints if _usable(c) and c.get(key) is not None]
    if not cands:
        return None
    cands, loops = _before_degeneration(cands, diagnoses)
    notes = [loops]
    for limit in _limits(facts, diagnoses):
        cands, note = _apply(cands, limit)
        notes.append(note)
    if key == "accuracy/ranking":
        best, how = max(cands, key=lambda c: (c.get(key), c.get("rewards/margins") or 0.0, c.step)), ""
    else:
        best, how = early_pick(cands, key)
    return {"name": best.name, "step": best.step, "reason": _reason(facts, best, key, notes + [how], kinds),
            "signal": key, "confidence": "low: no quality signal"}


SHIP_RULES = {"DPO102": "the over-optimization hump: the earliest checkpoint with most of the run's accuracy gain "
                        "within the KL budget (among all when none is)",
              "DPO103": "the held-out peak before overfitting"}


def _rule_choice(facts: RunFacts, diagnoses: list[Diagnosis]) -> dict | None:
    """The checkpoint a fired DPO102 / DPO103 says to ship (in that order), if it exists and is usable."""
    for code, why in SHIP_RULES.items():
        d = next((d for d in diagnoses if d.code == code), None)
        step = d.recommendation.params.get("ship_step") if d is not None else None
        ck = next((c for c in facts.checkpoints if step is not None and c.step == step and _usable(c)), None)
        if ck is None:
            continue
        acc, kl = ck.get("rewards/accuracies"), ck.get("gen/kl_mean")
        stats = ", ".join(f"{k} {fmt(v)}" for k, v in (("held-out accuracy", acc), ("KL", kl)) if v is not None)
        return {"name": ck.name, "step": ck.step, "reason": f"{why} ({code}; {stats}); no answer-quality signal",
                "signal": "rewards/accuracies", "confidence": "low: no quality signal"}
    return None


def _reason(facts: RunFacts, best: CheckpointFacts, key: str, notes: list[str], kinds: set[str]) -> str:
    label = "reference-free ranking accuracy" if key == "accuracy/ranking" else "held-out accuracy"
    margin = best.get("rewards/margins")
    lead = "highest" if key == "accuracy/ranking" else "by the quality-vs-KL hump:"
    text = f"{lead} {label} {fmt(best.get(key))}" + (f", margin {fmt(margin)}" if margin is not None else "")
    text += f" ({len(facts.trained)} trained checkpoints)"
    text += "".join(f"; {n}" for n in notes if n)
    return text + "; no answer-quality signal, so confidence is low (add --probe-suite or --judge)"


def _before_degeneration(cands: list[CheckpointFacts], diagnoses: list[Diagnosis]) -> tuple[list, str]:
    """The candidates before the first degenerate checkpoint DPO109 named (all of them if none is earlier)."""
    d = next((d for d in diagnoses if d.code == "DPO109"), None)
    first = d.recommendation.params.get("first_degenerate_step") if d is not None else None
    keep = [c for c in cands if first is not None and c.step < first]
    if first is None or not keep or len(keep) == len(cands):
        return cands, ""
    return keep, f"before the loops that start at step {first} (DPO109)"


def _interval(c: CheckpointFacts, key: str) -> tuple[float | None, float | None]:
    return c.get(f"{key}_low"), c.get(f"{key}_high")


def _confidence(best: CheckpointFacts, cands: list[CheckpointFacts], key: str) -> tuple[str | None, str]:
    """("clear" | "within noise" | None, a clause): is the best significantly ahead of the runner-up? A paired sign
    test over the probe prompts (both answered the same prompts); intervals only when no per-prompt scores exist."""
    others = [c for c in cands if c is not best]
    if not others:
        return None, ""
    runner = peak(others, key)
    test = compare(best, runner, key)
    if test is not None:
        said = (f"ahead on {test.ahead} and behind on {test.behind} of {test.n} prompts, paired sign test "
                f"p={test.p_value:.2g}")
        if test.significant and test.diff > 0:
            return "clear", f"; clearly ahead of the runner-up {runner.name} ({fmt(runner.get(key))}): {said}"
        return "within noise", (f"; within noise of the runner-up {runner.name} ({fmt(runner.get(key))}): {said}, so "
                                f"more probe prompts would be needed to tell them apart")
    (low, _), (_, r_high) = _interval(best, key), _interval(runner, key)
    if low is None or r_high is None:
        return None, f"; runner-up {runner.name} at {fmt(runner.get(key))} (no per-prompt scores to compare)"
    if low > r_high:
        return "clear", (f"; its 95% interval clears the runner-up's ({runner.name}, {fmt(runner.get(key))}; no "
                         f"per-prompt scores for a paired test)")
    return "within noise", (f"; within noise of the runner-up {runner.name} ({fmt(runner.get(key))}): the 95% "
                            f"intervals overlap (no per-prompt scores for a paired test)")


def _hump(best: CheckpointFacts, diagnoses: list[Diagnosis]) -> str:
    """The clause saying quality fell past the pick: only when DPO111 found that fall (pick and diagnoses agree)."""
    d = next((d for d in diagnoses if d.code == "DPO111"), None)
    if d is None or d.recommendation.params.get("ship_step") != best.step:
        return ""
    return f"; past it quality fell significantly ({d.kind.replace('_', ' ')}, DPO111 at {d.checkpoint})"


def _overrides(best: CheckpointFacts, diagnoses: list[Diagnosis]) -> str:
    """A clause when DPO102/DPO103 named another checkpoint from implicit-reward accuracy."""
    for code in SHIP_RULES:
        d = next((d for d in diagnoses if d.code == code), None)
        step = d.recommendation.params.get("ship_step") if d is not None else None
        if step is not None and step != best.step:
            return (f"; {code} suggested step {step} from implicit-reward accuracy, which does not track quality "
                    f"(Rafailov et al. 2024)")
    return ""


def _quality_choice(facts: RunFacts, diagnoses: list[Diagnosis]) -> dict | None:
    """The checkpoint with the best judge win rate, else verifiable task accuracy; None when neither was measured."""
    for key, label in QUALITY:
        cands = [c for c in facts.checkpoints if _usable(c) and c.get(key) is not None]
        if cands:
            break
    else:
        return None
    cands, loops = _before_degeneration(cands, diagnoses)
    best = peak(cands, key)
    fall = next((d for d in diagnoses if d.code == "DPO111"), None)
    step = fall.recommendation.params.get("ship_step") if fall is not None else None
    best = next((c for c in cands if c.step == step), best)
    low, high = _interval(best, key)
    ci = f", 95% interval {fmt(low)}-{fmt(high)}" if low is not None and high is not None else ""
    ref = facts.ref(key)
    text = (f"highest {label} ({fmt(best.get(key))}{ci}" + (f"; the reference's {fmt(ref)}" if ref is not None
                                                             else "") + f") of {len(cands)} checkpoints")
    confidence, versus = _confidence(best, cands, key)
    text += versus + _hump(best, diagnoses) + (f"; {loops}" if loops else "") + _overrides(best, diagnoses)
    return {"name": best.name, "step": best.step, "reason": text, "signal": key, "confidence": confidence}
