"""DPO102 over-optimization: the policy keeps spending KL from its reference without getting better.

What it detects
    Using the sampled KL(policy || reference) per completion (`gen/kl_mean`) divided by the reference's mean sampled
    answer length (`gen/length_mean` of the reference: nats per token of a typical reference answer) and held-out
    accuracy (`rewards/accuracies`) per checkpoint, when the last checkpoint is past the KL budget, any of:
    * the hump: checkpoints past the budget are no more accurate than the best checkpoint within it (+`acc_tol`),
      i.e. the KL spent beyond the budget bought nothing;
    * accuracy falls from its peak (by more than `acc_tol`, and by at least `min_pairs` held-out pairs: one pair
      changing side is noise) while KL keeps rising past the budget;
    * KL blow-up: the last checkpoint's KL exceeds `blowup_factor` (3) x the budget (beta too low or LR too high);
    * with a verifiable probe suite (`task/accuracy`, the graded share of the samples): past the budget the task
      accuracy never beat the best within it, the reference counting as within (KL 0), by more than the larger of
      `acc_tol` and `min_pairs` prompts (the hump on the real quality axis; implicit-reward accuracy need not track
      quality, Rafailov et al. 2024).
    A run whose last checkpoint is back within budget is not flagged (sampled KL is noisy from one checkpoint to the
    next).
    When the margin the run gained (`rewards/margins` / beta, nats) is under `displaced_margin_share` (0.15) of what
    the chosen answers lost (`ref_logps/chosen` - `logps/chosen`), the KL bought next to no preference: it went to
    answers in neither set. That is likelihood displacement's signature, so the finding is listed after DPO106 when
    DPO106 also fires (it still fires: which checkpoint to ship is the same question).
    When mode collapse (DPO104) also fires, it is listed first: the collapsed policy spent its KL on the one answer,
    and this rule's fix (raise beta) is the wrong one for a collapse (Kirk et al. 2024: a stronger KL penalty gave
    less diversity, not more). Measured (margin gained /
    chosen lost, last checkpoint): SmolLM2 zoo likelihood_displacement 1.9 / 46 = 0.04, over_optimization
    38.8 / 110 = 0.35 (0.38 at its first checkpoint); tiny zoo over_optimization ~1.1. 0.15 sits between them on a
    log scale (their geometric mean is 0.12).

The budget is the run's own: `kl_budget_share` (0.2) x the reference's mean per-token entropy along its sampled
    answers (`gen/entropy_mean`), i.e. the share of the reference's own uncertainty per token the policy has moved
    away from. A fixed number of nats per token does not transfer: a held-out healthy run spent 0.006 nats/token, the
    old zoos' healthy tiny run 0.6-1.3, and the old fixed 2 nats/token let a run at 0.67 (26x its first checkpoint's
    KL, quality falling) pass. The reference's entropy scales with the model and task (SmolLM2 2.0-2.6 nats/token on
    the corpus's tasks, the tiny models 0.63-0.65). Only where the entropy was not measured (older reports) does the
    fixed `kl_budget_per_token` (2) apply.
    Chosen on the calibration corpus (benchmarks/corpus/RESULTS.md): on its first 45 runs (two families), leave one
    model out, the best detection minus wrong-kind rate picked 0.2 and `blowup_factor` 10 with SmolLM2 and with
    tiny-Qwen3 held out, 0.3 and 10 with tiny-Llama held out, 0.2 and 10 on all runs. Re-measured on 52 runs of three
    families (Gemma-3-270M added, every run rescanned), leave one family out: the SmolLM2 and Gemma-3 folds keep 0.2
    and 10, the tiny fold picks 0.3. Under the corpus truth that follows issue 20's taxonomy (a fall below the
    reference with KL spent is over-optimization; benchmarks/corpus/outcome.py) every leave-one-family-out fold of
    the plain scans keeps 0.2 and picks `blowup_factor` 3 (was 10). Peak KL / entropy per token: healthy runs at most
    0.08, runs whose graded answers fell 0.15-23. `dpo-doctor explain DPO102` prints the held-out rates.

Why it matters
    Quality vs KL is hump-shaped for DPO, IPO and SLiC; with wide KL budgets the best checkpoint comes after ~25% of
    one epoch and quality falls while KL keeps rising (Rafailov et al. 2024, scaling laws). Implicit-reward
    accuracy and loss do not track win rate, so the KL budget is the lever to watch. Large early KL with length
    growth or repetition means beta is too low or the learning rate too high.

Evidence
    `gen/kl_mean` at the last checkpoint (threshold: the budget in nats per completion = budget per token x the
    reference's mean answer length; reference value: the KL of the checkpoint to ship), `gen/kl_per_token` (per
    the policy's own sampled token, for comparison) and `rewards/accuracies` there (reference value: the accuracy
    of the checkpoint to ship).

Recommended fix
    Ship the checkpoint at the hump: among the checkpoints within the KL budget (all of them when none stays
    within it), the earliest with most of the run's accuracy gain (rules/quality.py `early_pick`; sampled KL is too
    noisy from one checkpoint to the next for "the least KL" to find the hump: on the calibration corpus it shipped
    the last checkpoint of runs whose first was best). `params.ship_step` names it and `best_checkpoint`
    (dpo_doctor/rules/best.py) ships exactly that one. Checkpoints past DPO104's diversity floor or DPO101's length
    limit (at their defaults, as best.py reads them) are left out while any other remains: a collapsed or
    length-blown checkpoint is not the one to ship. For the next run raise beta by the
    measured overshoot: beta_new = beta * KL_measured / KL_budget (both per reference token), because at the DPO
    optimum pi ~ pi_ref * exp(r / beta), so the KL a run spends scales roughly as 1/beta; at most `max_beta_raise`
    (10) x per run, since the 1/beta law is a rough guide far from the budget; inputs in `params`.
    Fewer steps, IPO (over-optimizes least in Rafailov et al.) or online/iterative DPO are the alternatives.

References
    Rafailov, Chittepu, Park, Sikchi, Hejna, Knox, Finn, Niekum 2024 (Scaling Laws for Reward Model
    Overoptimization in DAAs, arXiv:2406.02900); Azar et al. 2024 (IPO, arXiv:2310.12036); Guo et al. 2024 (online
    DPO: Direct Language Model Alignment from Online AI Feedback, arXiv:2402.04792); SimPO README, princeton-nlp/SimPO
    (LR 1e-5 breaks models: "incoherent or repetitive text"; Meng, Xia, Chen 2024, SimPO, arXiv:2405.14734).
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("gen/kl_mean", "gen/kl_per_token", "gen/length_mean", "rewards/accuracies", "task/accuracy",
         "task/n_prompts", "rewards/margins", "logps/chosen", "ref_logps/chosen")
KL_BUDGET = 2.0  # fallback only: nats per reference token when the reference's entropy was not measured
# A collapse onto one answer spends its KL there, and its fix is not this rule's: Kirk et al. 2024 found a stronger KL
# penalty gave LESS diversity (DPO104), so when DPO104 also fires it is listed first and its fix read first.
SPECIFIC = ("mode_collapse",)
KL_SHARE = 0.2  # the budget: this share of the reference's own per-token entropy (calibration corpus, docstring)


def budget_of(facts: RunFacts, share: float, per_token: float) -> tuple[float, str]:
    """(budget in nats per reference token, how it was set). The run's own scale: `share` x the reference's mean
    per-token entropy along its sampled answers (`gen/entropy_mean`), how uncertain the reference itself is per
    token; the fixed `per_token` only when that entropy was not measured (older reports)."""
    h = facts.ref("gen/entropy_mean")
    if h is not None and h > 0:
        return share * h, f"{fmt(share)} x the reference's {fmt(h)} nats/token entropy"
    return per_token, "a fixed budget: the reference's entropy was not measured"


def kl_per_ref_token(ck, ref_length: float | None) -> float | None:
    """Sampled KL per completion / the REFERENCE's mean sampled length (nats/token). Not the policy's own length:
    a policy whose answers blow up (the usual companion of over-optimization) would excuse its KL by it."""
    kl = ck.get("gen/kl_mean")
    return kl / ref_length if kl is not None and ref_length else None


def _points(facts: RunFacts) -> list[tuple]:
    n = facts.ref("gen/length_mean")
    return [(c, kl, acc) for c in facts.trained
            if (kl := kl_per_ref_token(c, n)) is not None and (acc := c.get("rewards/accuracies")) is not None]


def shippable(facts: RunFacts, pts: list[tuple]) -> list[tuple]:
    """The points whose checkpoint breaks none of the ship limits (rules/quality.py: DPO101's length, DPO104's
    diversity; all of them when none is left), so the checkpoint this rule says to ship is never a collapsed or
    length-blown one that best.py would not ship."""
    from dpo_doctor.rules.quality import ship_limits, within

    limits = ship_limits(facts)
    return [p for p in pts if all(within(p[0], limit) is not False for limit in limits)] or pts


def hump(pts: list[tuple], budget: float) -> tuple:
    """The (checkpoint, kl, acc) to ship: within the budget, the earliest checkpoint with most of the run's
    accuracy gain (rules/quality.py `early_pick`, the same pick best.py makes without a quality signal), among all
    checkpoints when none is within. best.py ships this same checkpoint when DPO102 fires (one source of truth)."""
    from dpo_doctor.rules.quality import early_pick

    within = [p for p in pts if p[1] <= budget] or pts
    pick, _ = early_pick([p[0] for p in within])
    return next(p for p in within if p[0] is pick)


def task_hump(facts: RunFacts, pts: list[tuple], budget: float, tol: float, min_pairs: float) -> str | None:
    """With a verifiable probe suite, the hump on the real quality axis: past the budget `task/accuracy` never beat
    the best within it, the reference counting as within (KL 0). Implicit-reward accuracy need not track quality
    (Rafailov et al. 2024); on the SmolLM2 zoo's over_optimization run it stayed 0.75-0.81 while the graded
    accuracy of the samples fell from the reference's 0.19 to 0."""
    ref_task = facts.ref("task/accuracy")
    graded = [(c, kl, c.get("task/accuracy")) for c, kl, _ in pts]
    if ref_task is None or any(t is None for _, _, t in graded):
        return None
    within = [("the reference", ref_task, facts.reference_per_prompt.get("task/accuracy"))] + [
        (c.name, t, c.scores("task/accuracy")) for c, kl, t in graded if kl <= budget]
    beyond = [(t, c.scores("task/accuracy")) for c, kl, t in graded if kl > budget]
    name, best, best_scores = max(within, key=lambda w: w[1])
    if beyond and best_scores and all(s for _, s in beyond):  # paired: no checkpoint past it significantly better
        from dpo_doctor.metrics.paired import paired

        better = [t for t, s in beyond if (r := paired(s, best_scores)) and r.significant and r.diff > 0]
        if not better:
            return (f"past the {fmt(budget)} nats/token KL budget the verifiable task accuracy was never "
                    f"significantly above {name}'s {fmt(best)} (paired sign test over prompts; at most "
                    f"{fmt(max(t for t, _ in beyond))})")
        return None
    n = facts.ref("task/n_prompts")
    step = max(tol, min_pairs / n) if n else tol
    beyond = [t for t, _ in beyond]
    if beyond and max(beyond) <= best + step:
        return (f"past the {fmt(budget)} nats/token KL budget the verifiable task accuracy never beat {name}'s "
                f"{fmt(best)} (at most {fmt(max(beyond))})")
    return None


def displaced(ck, beta: float, share: float) -> tuple[float, float] | None:
    """(margin gained, chosen lost), both in summed nats per answer, when the margin is under `share` x the chosen
    answers' loss: the KL went to answers in neither set (likelihood displacement), not into beating rejected."""
    margin, lp, ref_lp = ck.get("rewards/margins"), ck.get("logps/chosen"), ck.get("ref_logps/chosen")
    if None in (margin, lp, ref_lp) or not beta or ref_lp - lp <= 0:
        return None
    gained, lost = margin / beta, ref_lp - lp
    return (gained, lost) if gained < share * lost else None


def _reasons(pts: list[tuple], budget: float, blowup: float, tol: float, fall: float) -> list[str]:
    """Which over-optimization signatures hold, compared with the hump checkpoint (whether or not it can ship)."""
    ship, last = hump(pts, budget), pts[-1]
    beyond = [p for p in pts if p[1] > budget]
    reasons = []
    if ship[1] <= budget and max(p[2] for p in beyond) <= ship[2] + tol:
        reasons.append(f"past the {fmt(budget)} nats/token KL budget accuracy never beat {ship[0].name}'s "
                       f"{fmt(ship[2])} (within budget)")
    peak = max(pts, key=lambda p: (p[2], -p[1]))
    if not reasons and last[1] > peak[1] and last[2] < peak[2] - fall:
        reasons.append(f"accuracy fell from {fmt(peak[2])} at {peak[0].name} to {fmt(last[2])} while KL rose "
                       f"from {fmt(peak[1])} to {fmt(last[1])} nats/token")
    if last[1] > blowup * budget:
        reasons.append(f"KL blew up to {fmt(last[1])} nats per sampled token, {fmt(last[1] / budget)}x the budget")
    return reasons


def check(facts: RunFacts, *, kl_budget_share: float = KL_SHARE, kl_budget_per_token: float = KL_BUDGET,
          blowup_factor: float = 3.0, acc_tol: float = 0.02, min_pairs: float = 2,
          displaced_margin_share: float = 0.15, max_beta_raise: float = 10.0) -> Finding | None:
    budget, how = budget_of(facts, kl_budget_share, kl_budget_per_token)
    pts = _points(facts)
    if not pts or pts[-1][1] <= budget:
        return None
    reasons = _reasons(pts, budget, blowup_factor, acc_tol, facts.accuracy_step(acc_tol, min_pairs))
    task = task_hump(facts, pts, budget, acc_tol, min_pairs)
    reasons += [task] if task else []
    if not reasons:
        return None
    ship = hump(shippable(facts, pts), budget)
    last, kl_last = pts[-1][0], pts[-1][1]
    beta_new = facts.beta * min(kl_last / budget, max_beta_raise)
    capped = f", capped at {fmt(max_beta_raise)}x" if kl_last / budget > max_beta_raise else ""
    evidence = (Evidence("gen/kl_mean", last.get("gen/kl_mean"), budget * facts.ref("gen/length_mean"),
                         ship[0].get("gen/kl_mean")),
                Evidence("gen/kl_per_token", last.get("gen/kl_per_token"), None, ship[0].get("gen/kl_per_token")),
                Evidence("rewards/accuracies", pts[-1][2], None, ship[2]))
    where = "the hump" if ship[1] <= budget else "no checkpoint stays within the budget; the early pick among all"
    fix = Recommendation(
        f"Ship {ship[0].name} ({where}: KL {fmt(ship[1])} nats/token, accuracy {fmt(ship[2])}); for the next run "
        f"raise beta from {fmt(facts.beta)} to {fmt(beta_new)} (= beta x KL {fmt(kl_last)} / budget {fmt(budget)} "
        f"nats/token, {how}{capped}), or train fewer steps; IPO or online DPO over-optimize less.",
        beta=beta_new, params={"kl_per_ref_token": kl_last, "kl_budget_per_token": budget,
                               "kl_budget_share": kl_budget_share if "entropy" in how else None,
                               "ref_entropy_per_token": facts.ref("gen/entropy_mean"),
                               "ref_length_mean": facts.ref("gen/length_mean"), "beta_old": facts.beta,
                               "ship_step": ship[0].step})
    message = f"over-optimization at {last.name}: " + "; ".join(reasons) + "."
    moved = displaced(last, facts.beta, displaced_margin_share)
    if moved is None:
        return Finding(message, evidence, fix, last.name, explained_by=SPECIFIC)
    message += (f" The margin gained only {fmt(moved[0])} nats while the chosen answers lost {fmt(moved[1])}: the KL "
                f"went to answers in neither set, so likelihood displacement (DPO106), when found, is listed first.")
    return Finding(message, evidence, fix, last.name, explained_by=SPECIFIC + ("likelihood_displacement",))


def _ck(kl, acc):
    return {"gen/kl_mean": kl, "rewards/accuracies": acc}


def _facts(*cks, ref_length=20.0, **kw):
    """Checkpoints' KL in nats per completion; the reference's answers `ref_length` tokens long."""
    return make_facts(*cks, reference={"gen/length_mean": ref_length}, **kw)


EXAMPLES = (
    Example("the hump: accuracy peaks within budget, KL keeps rising (25-token reference answers: 0.8 -> 4.8 "
            "nats/token; beta 0.1 x 4.8/2)",
            _facts(_ck(20, 0.70), _ck(45, 0.74), _ck(80, 0.73), _ck(120, 0.71), ref_length=25.0), True, beta=0.24),
    Example("tiny zoo over_optimization (beta 0.01, lr 5e-3): 229-392 nats over 21.2-token reference answers, "
            "10.8-18.5 nats/token against a 0.13 budget (0.2 x the reference's 0.649 nats/token entropy), accuracy "
            "still rising: a blow-up; beta 0.01 x 12.05/0.13 is capped at 10x",
            make_facts(_ck(254, 0.672), _ck(392, 0.75), _ck(229, 0.828), _ck(256, 0.891), beta=0.01,
                       reference={"gen/length_mean": 21.24, "gen/entropy_mean": 0.649}), True, beta=0.1),
    Example("calibration corpus tiny-llama-clean-b0.5-lr0.0001 (healthy: graded 0.72-0.66 against the reference's "
            "0.64): KL 0.35-0.95 nats over 20.8-token answers, 0.07 of the 0.649 nats/token entropy at most",
            make_facts(_ck(0.34, 0.88), _ck(0.73, 0.85), _ck(0.83, 0.88), _ck(0.94, 0.90), beta=0.5,
                       reference={"gen/length_mean": 20.8, "gen/entropy_mean": 0.649}), False),
    Example("calibration corpus tiny-llama-clean-b0.01-lr0.001 (graded 0.46 -> 0.16, reference 0.64): KL 5.5-17.7 "
            "nats, 0.4-1.3 of the entropy, reward accuracy falling from its first checkpoint (0.85 -> 0.75); beta 0.01 x "
            "0.673/0.13",
            make_facts(_ck(5.47, 0.85), _ck(12.1, 0.77), _ck(17.7, 0.75), _ck(14.0, 0.75), beta=0.01,
                       reference={"gen/length_mean": 20.8, "gen/entropy_mean": 0.649}, n_pairs=48), True,
            beta=0.05185),
    Example("past the budget but accuracy keeps paying for it", _facts(_ck(30, 0.70), _ck(60, 0.80), _ck(75, 0.88)),
            False),
    Example("tiny zoo healthy (lr 1e-3): 12.6-28.3 nats, 0.59-1.33 nats/token, accuracy rising",
            _facts(_ck(28.3, 0.875), _ck(12.6, 0.875), _ck(16.9, 0.938), _ck(27.1, 0.938), ref_length=21.24), False),
    Example("tiny zoo length_exploitation: noisy KL (33, 29, 68, 30 nats) back within budget at the end (1.4)",
            _facts(_ck(33.1, 1.0), _ck(29.1, 0.969), _ck(68.4, 0.906), _ck(29.7, 0.953), ref_length=21.24), False),
    Example("tiny zoo likelihood_displacement: past the budget (2.1-3.6 nats/token) with accuracy rising and no "
            "blow-up: displaced (DPO106), not over-optimized",
            _facts(_ck(44.3, 0.812), _ck(76.7, 0.859), _ck(64, 0.844), _ck(51, 0.906), ref_length=21.24), False),
    Example("16 held-out pairs, no checkpoint within budget, accuracy 0.562 -> 0.5 (one pair) while KL 2.6 -> 3.2 "
            "nats/token: noise (SmolLM2 demo tuning)", _facts(_ck(51.4, 0.562), _ck(63.3, 0.5), n_pairs=16), False),
    Example("64 held-out pairs, accuracy 0.75 -> 0.66 (six pairs) while KL 3 -> 4.5 nats/token (0.1 x 4.5/2)",
            _facts(_ck(60, 0.75), _ck(90, 0.66), n_pairs=64), True, beta=0.225),
    Example("SmolLM2 zoo over_optimization (beta 0.01, lr 5e-3): 42 and 40 nats over 18.5-token reference answers "
            "(2.3, 2.2 nats/token), graded task accuracy 0.19 -> 0 while reward accuracy stays 0.75-0.81 "
            "(0.01 x 2.17/2)",
            make_facts({**_ck(42.1, 0.812), "task/accuracy": 0.0}, {**_ck(40.1, 0.75), "task/accuracy": 0.0},
                       reference={"gen/length_mean": 18.5, "task/accuracy": 0.1875, "task/n_prompts": 16},
                       beta=0.01, n_pairs=16), True, beta=0.01084),
    Example("the same with per-prompt scores: past the budget no checkpoint is significantly above the reference's "
            "3 of 16 prompts right (paired sign test: 0 ahead, 3 behind)",
            make_facts({**_ck(42.1, 0.812), "task/accuracy": 0.0}, {**_ck(40.1, 0.75), "task/accuracy": 0.0},
                       reference={"gen/length_mean": 18.5, "task/accuracy": 0.1875, "task/n_prompts": 16},
                       beta=0.01, n_pairs=16, per_prompt=[{"task/accuracy": [0.0] * 16}] * 2,
                       reference_per_prompt={"task/accuracy": [1.0] * 3 + [0.0] * 13}), True, beta=0.01084),
    Example("SmolLM2 zoo healthy: 0.19 and 0.80 nats over 18.5-token answers (0.04 nats/token), task 0.19 -> 0.31",
            make_facts({**_ck(0.187, 0.812), "task/accuracy": 0.2}, {**_ck(0.797, 0.875), "task/accuracy": 0.312},
                       reference={"gen/length_mean": 18.5, "task/accuracy": 0.1875, "task/n_prompts": 16}), False),
    Example("no generation probes: nothing to say", _facts({"rewards/accuracies": 0.9}), False),
    Example("SmolLM2 likelihood_displacement pilot (minimal-edit pairs, lr 3e-3): KL 69 nats (3.7/token), task "
            "0.19 -> 0; fires, but the margin bought 1.9 nats for 46 lost on chosen (0.04 < 0.15: listed after DPO106)",
            make_facts({**_ck(52.1, 0.5), "task/accuracy": 0.025},
                       {**_ck(68.9, 0.542), "task/accuracy": 0.0, "rewards/margins": 0.189, "logps/chosen": -88.6,
                        "ref_logps/chosen": -42.3},
                       reference={"gen/length_mean": 18.5, "task/accuracy": 0.1875, "task/n_prompts": 16},
                       n_pairs=48), True, beta=0.1862),
    Example("no reference samples: no length to scale the budget by", make_facts(_ck(400, 0.8), _ck(500, 0.7)), False),
)

RULE = Rule("DPO102", "over-optimization", "over_optimization", "warning", check, __doc__, EXAMPLES, reads=READS)
