"""DPO102 over-optimization: the policy keeps spending KL from its reference without getting better.

What it detects
    Using the sampled KL(policy || reference) per completion (`gen/kl_mean`) and held-out accuracy
    (`rewards/accuracies`) per checkpoint, when the last checkpoint is past the KL budget, any of:
    * the hump: checkpoints past the KL budget (`kl_budget` nats) are no more accurate than the best checkpoint
      within it (+`acc_tol`), i.e. the KL spent beyond the budget bought nothing;
    * accuracy falls from its peak (by more than `acc_tol`, and by at least `min_pairs` held-out pairs: one pair
      changing side is noise) while KL keeps rising past the budget;
    * KL blow-up: the last checkpoint's KL exceeds `blowup_factor` x the budget (beta too low or LR too high).
    A run whose last checkpoint is back within budget is not flagged (sampled KL is noisy from one checkpoint to the
    next).

    Calibrated on the zoo (`dpo-doctor zoo measure`, 32 prompts x 4 samples, sequence KL in nats per completion):
    healthy 13-30 across its checkpoints (29.7 at the last), injected (over_optimization, beta 0.01) 82-227 (227
    at the last, 4.5x the budget) at lr 3e-3, 229-392 (256 at the last) at lr 5e-3, the zoo's setting since
    2026-12-01. The other runs stay below the blow-up line: length_exploitation 29-70 (31 at
    the last), likelihood_displacement 39-80 (54), overfitting 9-19. Departure from the literature's 10 nats
    ("large early KL", a suggested threshold built on the SimPO README and Rafailov et al. 2024): the default budget
    is 50, because the zoo's tiny model (2 layers, 384-token vocabulary, lr 1e-3) spends ~1 nat per sampled token
    in a run that generalises well (held-out accuracy 0.89 -> 0.94 while KL goes 13 -> 30), so 10 flags every
    healthy checkpoint; 50 sits between healthy's largest (30) and over_optimization's smallest (82). The same
    healthy recipe at lr 5e-4 stays at 5-9 nats, the literature's scale, so for larger models start from
    `--set DPO102.kl_budget=10`. The budget is per completion, so it grows with answer length.

Why it matters
    Quality vs KL is hump-shaped for DPO, IPO and SLiC; with wide KL budgets the best checkpoint comes after ~25% of
    one epoch and quality falls while KL keeps rising (Rafailov et al. 2024, scaling laws). Implicit-reward
    accuracy and loss do not track win rate, so the KL budget is the lever to watch. Large early KL with length
    growth or repetition means beta is too low or the learning rate too high.

Evidence
    `gen/kl_mean` at the last checkpoint (threshold: the budget; reference value: the KL of the checkpoint to ship)
    and `rewards/accuracies` there (reference value: the accuracy of the checkpoint to ship).

Recommended fix
    Ship the checkpoint at the hump: the most accurate checkpoint within the KL budget (ties: larger margin, then
    later), or, when none stays within it, the one with the least KL. `params.ship_step` names it and
    `best_checkpoint` (dpo_doctor/best.py) ships exactly that one. For the next run raise beta by the measured overshoot:
    beta_new = beta * KL_measured / KL_budget, because at the DPO optimum pi ~ pi_ref * exp(r / beta), so the KL a
    run spends scales roughly as 1/beta; inputs in `params`. Fewer steps, IPO (over-optimizes least in Rafailov et
    al.) or online/iterative DPO are the alternatives.

References
    Rafailov, Chittepu, Park, Sikchi, Hejna, Knox, Finn, Niekum 2024 (Scaling Laws for Reward Model
    Overoptimization in DAAs, arXiv:2406.02900); Azar et al. 2024 (IPO, arXiv:2310.12036); Guo et al. 2024 (online
    DPO: Direct Language Model Alignment from Online AI Feedback, arXiv:2402.04792); SimPO README, princeton-nlp/SimPO
    (LR 1e-5 breaks models: "incoherent or repetitive text"; Meng, Xia, Chen 2024, SimPO, arXiv:2405.14734).
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("gen/kl_mean", "rewards/accuracies")


def _points(facts: RunFacts) -> list[tuple]:
    return [(c, kl, acc) for c in facts.trained
            if (kl := c.get("gen/kl_mean")) is not None and (acc := c.get("rewards/accuracies")) is not None]


def hump(pts: list[tuple], budget: float) -> tuple:
    """The (checkpoint, kl, acc) to ship: the most accurate within the budget (ties: larger margin, later step),
    else the least KL. best.py ships this same checkpoint when DPO102 fires (one source of truth)."""
    within = [p for p in pts if p[1] <= budget]
    if within:
        return max(within, key=lambda p: (p[2], p[0].get("rewards/margins") or 0.0, p[0].step))
    return min(pts, key=lambda p: p[1])


def _reasons(pts: list[tuple], budget: float, blowup: float, tol: float, fall: float) -> list[str]:
    """Which over-optimization signatures hold, compared with the checkpoint to ship."""
    ship, last = hump(pts, budget), pts[-1]
    beyond = [p for p in pts if p[1] > budget]
    reasons = []
    if ship[1] <= budget and max(p[2] for p in beyond) <= ship[2] + tol:
        reasons.append(f"past the {fmt(budget)}-nat KL budget accuracy never beat {ship[0].name}'s "
                       f"{fmt(ship[2])} (within budget)")
    peak = max(pts, key=lambda p: (p[2], -p[1]))
    if not reasons and last[1] > peak[1] and last[2] < peak[2] - fall:
        reasons.append(f"accuracy fell from {fmt(peak[2])} at {peak[0].name} to {fmt(last[2])} while KL rose "
                       f"from {fmt(peak[1])} to {fmt(last[1])} nats")
    if last[1] > blowup * budget:
        reasons.append(f"KL blew up to {fmt(last[1])} nats per completion, {fmt(last[1] / budget)}x the budget")
    return reasons


def check(facts: RunFacts, *, kl_budget: float = 50.0, blowup_factor: float = 3.0,
          acc_tol: float = 0.02, min_pairs: float = 2) -> Finding | None:
    pts = _points(facts)
    if not pts or pts[-1][1] <= kl_budget:
        return None
    reasons = _reasons(pts, kl_budget, blowup_factor, acc_tol, facts.accuracy_step(acc_tol, min_pairs))
    if not reasons:
        return None
    ship = hump(pts, kl_budget)
    last, kl_last = pts[-1][0], pts[-1][1]
    beta_new = facts.beta * kl_last / kl_budget
    evidence = (Evidence("gen/kl_mean", kl_last, kl_budget, ship[1]),
                Evidence("rewards/accuracies", pts[-1][2], None, ship[2]))
    where = "the hump" if ship[1] <= kl_budget else "no checkpoint stays within the budget; the least KL"
    fix = Recommendation(
        f"Ship {ship[0].name} ({where}: KL {fmt(ship[1])}, accuracy {fmt(ship[2])}); for the next run raise beta "
        f"from {fmt(facts.beta)} to {fmt(beta_new)} (= beta x KL {fmt(kl_last)} / budget {fmt(kl_budget)}), or "
        f"train fewer steps; IPO or online DPO over-optimize less.",
        beta=beta_new, params={"kl_measured": kl_last, "kl_budget": kl_budget, "beta_old": facts.beta,
                               "ship_step": ship[0].step})
    message = f"over-optimization at {last.name}: " + "; ".join(reasons) + "."
    return Finding(message, evidence, fix, last.name)


def _ck(kl, acc):
    return {"gen/kl_mean": kl, "rewards/accuracies": acc}


EXAMPLES = (
    Example("the hump: accuracy peaks within budget, KL keeps rising (beta 0.1 x 120/50)",
            make_facts(_ck(20, 0.70), _ck(45, 0.74), _ck(80, 0.73), _ck(120, 0.71)), True, beta=0.24),
    Example("KL blow-up: 227 nats at beta 0.01, accuracy still rising (zoo over_optimization: 0.01 x 227/50)",
            make_facts(_ck(144, 0.70), _ck(82, 0.78), _ck(218, 0.80), _ck(227, 0.83), beta=0.01), True, beta=0.0454),
    Example("past the budget but accuracy keeps paying for it", make_facts(_ck(30, 0.70), _ck(60, 0.80), _ck(75, 0.88)),
            False),
    Example("healthy (zoo, lr 1e-3): 13-30 nats, accuracy rising", make_facts(_ck(28.5, 0.875), _ck(12.9, 0.891),
                                                                             _ck(21.9, 0.922), _ck(29.7, 0.938)),
            False),
    Example("noisy KL back within budget at the end (zoo length_exploitation: 33, 29, 70, 31)",
            make_facts(_ck(33, 1.0), _ck(29, 0.97), _ck(70, 0.91), _ck(31, 0.95)), False),
    Example("16 held-out pairs, no checkpoint within budget, accuracy 0.562 -> 0.5 (one pair) while KL 51 -> 63: "
            "noise (SmolLM2 demo tuning)", make_facts(_ck(51.4, 0.562), _ck(63.3, 0.5), n_pairs=16), False),
    Example("64 held-out pairs, accuracy 0.75 -> 0.66 (six pairs) while KL 60 -> 90",
            make_facts(_ck(60, 0.75), _ck(90, 0.66), n_pairs=64), True, beta=0.18),
    Example("no generation probes: nothing to say", make_facts({"rewards/accuracies": 0.9}), False),
)

RULE = Rule("DPO102", "over-optimization", "over_optimization", "warning", check, __doc__, EXAMPLES, reads=READS)
