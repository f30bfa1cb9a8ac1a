"""Which checkpoint to ship, and why: `report.json["best_checkpoint"]`.

The choice: the highest held-out accuracy (`rewards/accuracies`; ties broken by the larger mean margin, then the
later step) among trained checkpoints that stay inside the limits the diagnoses care about:
- the KL budget (`gen/kl_mean` <= DPO102's budget per token x the reference's mean sampled length; Rafailov et
  al. 2024: past it quality falls while KL rises, so the best checkpoint is the top of the hump, often ~25% into
  the first epoch);
- no length blow-up (`gen/length_ratio` within DPO101's limit) when length exploitation was found;
- diversity within DPO104's allowed drop when mode collapse was found.
A limit that no checkpoint meets is relaxed to the checkpoint closest to it (said in the reason). With a wrong
reference (DPO003) the reference-free `accuracy/ranking` (pi(chosen) > pi(rejected)) ranks checkpoints instead.
No choice (None) when nothing was trained or nothing learned: there is no checkpoint worth shipping over the
reference.

A real quality signal outranks all of that (implicit-reward accuracy does not track win rate: Rafailov et al.
2024): the judge's win rate against the reference (`judge/win_rate`, from `--judge`), else the accuracy on a
verifiable probe suite (`task/accuracy`). The best is the checkpoint with the highest signal (ties: less KL, then
the earlier step, i.e. the top of the hump when quality turns down while KL keeps rising); the reason says which
signal chose it, whether its 95% interval clears the runner-up's (`confidence`: "clear" or "within noise"), and
where quality fell past it while KL rose. Checkpoints from the first degenerate one on (DPO109) are never shipped
while an earlier one exists.

One source of truth: when a rule that says which checkpoint to ship fired (DPO102's hump, DPO103's held-out peak:
`recommendation.params.ship_step`), that checkpoint is the best one, so the report never names two. Over-optimization
wins over overfitting (the KL budget is the stricter limit). With a wrong reference those rules read
reference-relative accuracies, so the ranking-accuracy choice above applies instead.
"""

from __future__ import annotations

from dpo_doctor.rules import RULES, Diagnosis
from dpo_doctor.rules.records import CheckpointFacts, RunFacts, finite, fmt

Limit = tuple[str, float, str, str]  # (metric, limit, "max"|"min", what it protects)


def _threshold(diagnoses: list[Diagnosis], code: str, metric: str, default: float) -> float:
    for d in diagnoses:
        for e in d.evidence:
            if d.code == code and e.metric == metric and finite(e.threshold):
                return float(e.threshold)
    return default


def _limits(facts: RunFacts, diagnoses: list[Diagnosis]) -> list[Limit]:
    kinds = {d.kind for d in diagnoses}
    per_token = RULES["DPO102"].params["kl_budget_per_token"]
    ref_length = facts.ref("gen/length_mean")
    default = per_token * ref_length if ref_length else None
    budget = _threshold(diagnoses, "DPO102", "gen/kl_mean", default)
    limits: list[Limit] = [] if not budget else [
        ("gen/kl_mean", budget, "max", f"the KL budget ({fmt(budget)} nats per completion: {fmt(per_token)} nats "
                                       f"per token of the reference's {fmt(ref_length)}-token answers)")]
    if "length_exploitation" in kinds:
        ratio = RULES["DPO101"].params["max_length_ratio"]
        limits.append(("gen/length_ratio", ratio, "max", f"a length ratio of {fmt(ratio)}"))
    ref_ead = facts.ref("gen/ead_per_input")
    if "mode_collapse" in kinds and ref_ead:
        floor = (1 - RULES["DPO104"].params["max_drop"]) * ref_ead
        limits.append(("gen/ead_per_input", floor, "min", "the allowed diversity drop"))
    return limits


def _value(c: CheckpointFacts, metric: str) -> float | None:
    return c.get(metric)


def _apply(cands: list[CheckpointFacts], limit: Limit) -> tuple[list[CheckpointFacts], str]:
    metric, bound, side, what = limit
    measured = [c for c in cands if _value(c, metric) is not None]
    if not measured:
        return cands, ""
    ok = [c for c in measured if (_value(c, metric) <= bound if side == "max" else _value(c, metric) >= bound)]
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
    best = max(cands, key=lambda c: (c.get(key), c.get("rewards/margins") or 0.0, c.step))
    return {"name": best.name, "step": best.step, "reason": _reason(facts, best, key, notes, kinds), "signal": key}


SHIP_RULES = {"DPO102": "the over-optimization hump: the most accurate checkpoint within the KL budget (the least "
                        "KL when none is)",
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
        return {"name": ck.name, "step": ck.step, "reason": f"{why} ({code}; {stats})",
                "signal": "rewards/accuracies"}
    return None


def _reason(facts: RunFacts, best: CheckpointFacts, key: str, notes: list[str], kinds: set[str]) -> str:
    label = "reference-free ranking accuracy" if key == "accuracy/ranking" else "held-out accuracy"
    margin = best.get("rewards/margins")
    text = f"highest {label} ({fmt(best.get(key))}" + (f", margin {fmt(margin)})" if margin is not None else ")")
    text += f" of {sum(1 for c in facts.checkpoints if c.step > 0)} trained checkpoints"
    text += "".join(f"; {n}" for n in notes if n)
    later = [c for c in facts.checkpoints if c.step > best.step and c.get(key) is not None]
    if later and kinds & {"over_optimization", "overfitting"}:
        text += "; later checkpoints drift further without doing better (the over-optimization hump)"
    return text


QUALITY = (("judge/win_rate", "judge win rate against the reference"), ("task/accuracy", "verifiable task accuracy"))


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
    """("clear" | "within noise" | None, a clause): does the best's 95% interval clear the runner-up's?"""
    others = [c for c in cands if c is not best]
    if not others:
        return None, ""
    runner = max(others, key=lambda c: c.get(key))
    (low, _), (_, r_high) = _interval(best, key), _interval(runner, key)
    if low is None or r_high is None:
        return None, f"; runner-up {runner.name} at {fmt(runner.get(key))} (no interval to compare)"
    if low > r_high:
        return "clear", f"; its 95% interval clears the runner-up's ({runner.name}, {fmt(runner.get(key))})"
    return "within noise", (f"; within noise of the runner-up {runner.name} ({fmt(runner.get(key))}): the 95% "
                            f"intervals overlap, so more probe prompts would be needed to tell them apart")


def _hump(best: CheckpointFacts, cands: list[CheckpointFacts], key: str) -> str:
    """A clause when quality fell after the best while KL kept rising (the over-optimization hump)."""
    later = [c for c in cands if c.step > best.step]
    if not later:
        return ""
    last = later[-1]
    kl, kl_last = best.get("gen/kl_mean"), last.get("gen/kl_mean")
    if last.get(key) < best.get(key) and kl is not None and kl_last is not None and kl_last > kl:
        return (f"; past it quality fell to {fmt(last.get(key))} at {last.name} while KL rose from {fmt(kl)} to "
                f"{fmt(kl_last)} nats (the over-optimization hump)")
    return ""


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
    best = max(cands, key=lambda c: (c.get(key), -(c.get("gen/kl_mean") or 0.0), -c.step))
    low, high = _interval(best, key)
    ci = f", 95% interval {fmt(low)}-{fmt(high)}" if low is not None and high is not None else ""
    ref = facts.ref(key)
    text = (f"highest {label} ({fmt(best.get(key))}{ci}" + (f"; the reference's {fmt(ref)}" if ref is not None
                                                             else "") + f") of {len(cands)} checkpoints")
    confidence, versus = _confidence(best, cands, key)
    text += versus + _hump(best, cands, key) + (f"; {loops}" if loops else "") + _overrides(best, diagnoses)
    return {"name": best.name, "step": best.step, "reason": text, "signal": key, "confidence": confidence}
