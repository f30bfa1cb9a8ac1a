"""DPO102 over-optimization: the policy keeps spending KL from its reference without getting better.

What it detects
    Using the sampled KL(policy || reference) per completion (`gen/kl_mean`) and held-out accuracy
    (`rewards/accuracies`) per checkpoint, any of:
    * the hump: checkpoints past the KL budget (`kl_budget` nats) are no more accurate than the best checkpoint
      within it (+`acc_tol`), i.e. the KL spent beyond the budget bought nothing;
    * accuracy falls from its peak (by more than `acc_tol`) while KL keeps rising past the budget;
    * KL blow-up: the last checkpoint's KL exceeds `blowup_factor` x the budget (beta too low or LR too high).

Why it matters
    Quality vs KL is hump-shaped for DPO, IPO and SLiC; with wide KL budgets the best checkpoint comes after ~25% of
    one epoch and quality falls while KL keeps rising (Rafailov et al. 2024, scaling laws). Implicit-reward
    accuracy and loss do not track win rate, so the KL budget is the lever to watch. Large early KL with length
    growth or repetition means beta is too low or the learning rate too high.

Evidence
    `gen/kl_mean` at the last checkpoint (threshold: the budget; reference value: the KL of the most accurate
    checkpoint within budget) and `rewards/accuracies` there (reference value: the peak accuracy).

Recommended fix
    Ship the checkpoint at the hump (see best_checkpoint). For the next run raise beta by the measured overshoot:
    beta_new = beta * KL_measured / KL_budget, because at the DPO optimum pi ~ pi_ref * exp(r / beta), so the KL a
    run spends scales roughly as 1/beta; inputs in `params`. Fewer steps, IPO (over-optimizes least in Rafailov et
    al.) or online/iterative DPO are the alternatives.

References
    Rafailov, Chittepu, Park et al. 2024 (arXiv 2406.02900); Azar et al. 2024 (IPO); Guo et al. 2024 (online DPO);
    SimPO README (LR 1e-5 breaks models); dpo-literature.md sections 4b and 10 rows 6 and 15.
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("gen/kl_mean", "rewards/accuracies")


def _points(facts: RunFacts) -> list[tuple]:
    return [(c, kl, acc) for c in facts.trained
            if (kl := c.get("gen/kl_mean")) is not None and (acc := c.get("rewards/accuracies")) is not None]


def _reasons(pts: list[tuple], budget: float, blowup: float, tol: float) -> tuple[list[str], tuple]:
    """Which over-optimization signatures hold, and the peak (checkpoint, kl, acc) they compare against."""
    first_out = next(i for i, p in enumerate(pts) if p[1] > budget)
    within, beyond = pts[:first_out], pts[first_out:]
    peak = max(pts, key=lambda p: (p[2], -p[1]))
    reasons = []
    if within:
        best_in = max(within, key=lambda p: p[2])
        if max(p[2] for p in beyond) <= best_in[2] + tol:
            reasons.append(f"past the {fmt(budget)}-nat KL budget accuracy never beat {best_in[0].name}'s "
                           f"{fmt(best_in[2])} (within budget)")
            peak = best_in
    last = pts[-1]
    if last[1] > peak[1] and last[2] < peak[2] - tol and not reasons:
        reasons.append(f"accuracy fell from {fmt(peak[2])} at {peak[0].name} to {fmt(last[2])} while KL rose "
                       f"from {fmt(peak[1])} to {fmt(last[1])} nats")
    if last[1] > blowup * budget:
        reasons.append(f"KL blew up to {fmt(last[1])} nats per completion, {fmt(last[1] / budget)}x the budget")
    return reasons, peak


def check(facts: RunFacts, *, kl_budget: float = 10.0, blowup_factor: float = 3.0,
          acc_tol: float = 0.02) -> Finding | None:
    pts = _points(facts)
    if not pts or all(p[1] <= kl_budget for p in pts):
        return None
    reasons, peak = _reasons(pts, kl_budget, blowup_factor, acc_tol)
    if not reasons:
        return None
    last, kl_last = pts[-1][0], pts[-1][1]
    beta_new = facts.beta * kl_last / kl_budget
    evidence = (Evidence("gen/kl_mean", kl_last, kl_budget, peak[1]),
                Evidence("rewards/accuracies", pts[-1][2], None, peak[2]))
    fix = Recommendation(
        f"Ship {peak[0].name} (the hump); for the next run raise beta from {fmt(facts.beta)} to {fmt(beta_new)} "
        f"(= beta x KL {fmt(kl_last)} / budget {fmt(kl_budget)}), or train fewer steps; IPO or online DPO "
        f"over-optimize less.",
        beta=beta_new, params={"kl_measured": kl_last, "kl_budget": kl_budget, "beta_old": facts.beta,
                               "peak_step": peak[0].step})
    message = f"over-optimization at {last.name}: " + "; ".join(reasons) + "."
    return Finding(message, evidence, fix, last.name)


def _ck(kl, acc):
    return {"gen/kl_mean": kl, "rewards/accuracies": acc}


EXAMPLES = (
    Example("the hump: accuracy peaks within budget, KL keeps rising (beta 0.1 x 24/10)",
            make_facts(_ck(4, 0.70), _ck(9, 0.74), _ck(16, 0.73), _ck(24, 0.71)), True, beta=0.24),
    Example("KL blow-up: 45 nats at beta 0.01, accuracy still rising (beta 0.01 x 45/10)",
            make_facts(_ck(20, 0.70), _ck(32, 0.78), _ck(45, 0.83), beta=0.01), True, beta=0.045),
    Example("past the budget but accuracy keeps paying for it", make_facts(_ck(6, 0.70), _ck(12, 0.80), _ck(15, 0.88)),
            False),
    Example("healthy: within the KL budget", make_facts(_ck(2, 0.8), _ck(4, 0.9), _ck(6, 0.94)), False),
    Example("no generation probes: nothing to say", make_facts({"rewards/accuracies": 0.9}), False),
)

RULE = Rule("DPO102", "over-optimization", "over_optimization", "warning", check, __doc__, EXAMPLES, reads=READS)
