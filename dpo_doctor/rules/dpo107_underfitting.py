"""DPO107 underfitting: after training the policy barely separates chosen from rejected.

What it detects
    At the last trained checkpoint (excluding the exact no-op that DPO002 reports), either:
    * held-out accuracy below `min_accuracy` (0.55; 0.6 until the calibration corpus chose 0.55 on every
      leave-one-model-out fold, benchmarks/corpus/RESULTS.md) with a per-token margin (`margins_per_token`, beta-free) below
      `min_margin_per_token` nats/token: the ranking is barely learned;
    * a saturated loss: the median beta-scaled margin (`margins/q50`) >= `saturated_margin` (sigma(5) = 0.993, so
      the typical pair no longer produces a gradient) while the beta-free per-token margin stays below
      `max_margin_per_token`: beta is so high the loss saturates before the policy moves;
    * a loss that barely left ln 2: the mean beta-scaled margin (`rewards/margins`) is positive but below
      `min_beta_margin` (0.05: sigma(0.05) = 0.512, the loss within 0.025 of ln 2), and so is the last logged
      training margin when the log has one: the policy moves, far too slowly (a learning rate of 1e-7 logs margins
      of 2e-4). Exactly 0 is DPO002's case; a training margin that rose while the held-out one did not is a
      generalisation problem, not slowness (SmolLM2 zoo likelihood_displacement: train 0.77, held-out -0.03).

    Why the defaults transfer between models: the beta-scaled margin is the DPO loss's own argument,
    dimensionless and read through sigma() the same way on any model; accuracy is a share of pairs. Measured: tiny
    zoo margins 0.22 (label_noise, the smallest learning run) to 26.7 (underfitting, beta 5), no_learning exactly 0;
    SmolLM2 zoo (LoRA, 16 steps, 16 held-out pairs): healthy 0.108, length_exploitation 0.202, over_optimization
    0.827, mode_collapse 0.229; likelihood_displacement -0.03 and label_noise -0.041 (negative: not this
    path; label_noise fires the first path, accuracy 0.31). `margins_per_token` (nats/token) is the one scaled
    number, used only together with a dimensionless one.

Why it matters
    When the training log shows the train pairs fitted (the accuracy of its last rows saturated, DPO103's test) the
    recommendation says so: the run learns its pairs and only the held-out ones do not follow, which a share of
    flipped labels or a train/eval mismatch explains better than a too-high beta (SmolLM2 zoo label_noise: 25%
    flipped, train accuracy 1.0, held-out 0.58 at 0.012 nats/token; its healthy run reaches only 0.73 at 0.02, so
    the flips erase the held-out signal and the noise cannot be told apart from slowness on 48 pairs).

    Beta sets how far DPO may move from the reference: too high and the policy stays a copy of it (accuracy stuck
    below 0.6, sampled KL below ~1 nat, margins ~0), or learns a sliver and then stops receiving gradient. The
    SimPO authors' tuned DPO beta was 0.01, ten times below the common default.

Evidence
    `rewards/accuracies` and `margins_per_token` (first path), or `margins/q50` and `margins_per_token` (second
    path), with thresholds; `gen/kl_mean` when generation probes ran.

Recommended fix
    Lower beta: the per-token margin a DPO run reaches scales roughly as 1/beta (the optimum's log-ratio is
    reward / beta), so beta_new = beta * m_observed / `target_margin_per_token`, with the factor clipped to
    [1/`max_beta_cut`, 1/`min_beta_cut`] (at most 10x per retry, as the DPO README's 0.1 -> 0.05 -> 0.01 sweep;
    at least 2x so the retry is a real change). If beta is already small, raise the learning rate instead.
    A loss stuck near ln 2 (third path) gets a learning-rate change instead: with Adam the step size is set by the
    learning rate, not the gradient's scale, so in this near-linear regime the margin grows about in proportion to
    it: lr_new = lr x `target_beta_margin` / margin, the factor clipped to [`min_beta_cut`, `max_lr_raise`]
    (`params.learning_rate` when the training log has it; `params.lr_factor` always).

References
    Rafailov, Sharma, Mitchell, Ermon, Manning, Finn 2023 (DPO, arXiv:2305.18290: beta 0.1-0.5); Meng, Xia, Chen
    2024 (SimPO, arXiv:2405.14734; its README, princeton-nlp/SimPO: DPO beta 0.01); allenai/reward-bench#93,
    huggingface/smol-course#307 (PR) and modelscope/ms-swift#7285 (which beta, and its direction: higher beta =
    closer to ref, as TRL's `DPOConfig` docstring says).
    GitHub threads: owner/repo#N is https://github.com/owner/repo/issues/N.
"""

from __future__ import annotations

from dpo_doctor.rules.dpo103_overfitting import train_saturated
from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("rewards/accuracies", "margins_per_token", "margins/q50", "gen/kl_mean")


def _reason(ck, min_accuracy, min_margin, saturated_margin, max_margin, min_beta_margin,
            train_margin: float | None) -> tuple[str, tuple] | None:
    acc, m, q50 = ck.get("rewards/accuracies"), ck.get("margins_per_token"), ck.get("margins/q50")
    bm = ck.get("rewards/margins")
    if m is None or abs(m) <= 1e-9:  # exactly the reference: DPO002's case
        return None
    slow_in_training = train_margin is None or train_margin < min_beta_margin
    if bm is not None and 0 < bm < min_beta_margin and slow_in_training:
        return (f"the mean beta-scaled margin is only {fmt(bm)} (loss {fmt(0.6931 - bm / 2)}, within "
                f"{fmt(abs(bm) / 2)} of ln 2): the policy moves, far too slowly",
                (Evidence("rewards/margins", bm, min_beta_margin, None),
                 Evidence("margins_per_token", m, None, None)))
    if acc is not None and acc < min_accuracy and abs(m) < min_margin:
        return (f"accuracy {fmt(acc)} with a per-token margin of only {fmt(m)} nats/token",
                (Evidence("rewards/accuracies", acc, min_accuracy, None),
                 Evidence("margins_per_token", m, min_margin, None)))
    if q50 is not None and q50 >= saturated_margin and m < max_margin:
        return (f"the median beta-scaled margin is {fmt(q50)} (loss saturated) while the policy moved only "
                f"{fmt(m)} nats/token: beta is so high the gradient vanished before the policy learned",
                (Evidence("margins/q50", q50, saturated_margin, None),
                 Evidence("margins_per_token", m, max_margin, None)))
    return None


def check(facts: RunFacts, *, min_accuracy: float = 0.55, min_margin_per_token: float = 0.05,
          saturated_margin: float = 5.0, max_margin_per_token: float = 0.3, target_margin_per_token: float = 0.5,
          max_beta_cut: float = 10.0, min_beta_cut: float = 2.0, min_beta_margin: float = 0.05,
          target_beta_margin: float = 0.5, max_lr_raise: float = 100.0) -> Finding | None:
    if not facts.trained:
        return None
    ck = facts.trained[-1]
    train = facts.log("rewards/margins")
    found = _reason(ck, min_accuracy, min_margin_per_token, saturated_margin, max_margin_per_token, min_beta_margin,
                    train[-1][1] if train else None)
    if found is None:
        return None
    if found[1][0].metric == "rewards/margins":
        return Finding(f"underfitting at {ck.name}: {found[0]}.", found[1],
                       lr_fix(facts, abs(ck.get("rewards/margins")), target_beta_margin, min_beta_cut, max_lr_raise),
                       ck.name)
    m = abs(ck.get("margins_per_token"))
    factor = min(max(m / target_margin_per_token, 1 / max_beta_cut), 1 / min_beta_cut)
    beta_new = facts.beta * factor
    kl = ck.get("gen/kl_mean")
    evidence = found[1] + ((Evidence("gen/kl_mean", kl, None, None),) if kl is not None else ())
    fix = Recommendation(
        f"Lower beta from {fmt(facts.beta)} to {fmt(beta_new)} (= beta x margin {fmt(m)} / target "
        f"{fmt(target_margin_per_token)} nats/token, clipped to {fmt(1 / max_beta_cut)}-{fmt(1 / min_beta_cut)}x); "
        f"if beta is already small, raise the learning rate.",
        beta=beta_new, params={"beta_old": facts.beta, "margin_per_token": m,
                               "target_margin_per_token": target_margin_per_token, "factor": factor})
    fitted, _ = train_saturated(facts, 3, 0.95, 0.1)
    if fitted and found[1][0].metric == "rewards/accuracies":
        fix = Recommendation(
            fix.text + " But the training pairs ARE fitted (train accuracy saturated in the log), so the run "
            "learns them and it is the held-out pairs that do not follow: check for label noise (a share of flipped "
            "pairs erases a weak held-out signal) or a train/eval mismatch before lowering beta.",
            beta=fix.beta, variant=fix.variant, params={**fix.params, "train_fitted": True})
    return Finding(f"underfitting at {ck.name}: {found[0]}.", evidence, fix, ck.name)


def lr_fix(facts: RunFacts, margin: float, target: float, min_raise: float, max_raise: float) -> Recommendation:
    """Raise the learning rate by target / margin (clipped): the margin grows ~linearly with it under Adam."""
    factor = min(max(target / margin, min_raise), max_raise)
    lrs = [v for _, v in facts.log("learning_rate")]
    lr = max(lrs) if lrs else None
    what = (f"from {fmt(lr)} to {fmt(lr * factor)}" if lr else f"{fmt(factor)}x")
    return Recommendation(
        f"Raise the learning rate {what} (= x target margin {fmt(target)} / measured {fmt(margin)}, clipped to "
        f"{fmt(min_raise)}-{fmt(max_raise)}x), beta unchanged; or train longer.",
        params={"lr_factor": factor, "learning_rate_old": lr, "learning_rate": lr * factor if lr else None,
                "beta_margin": margin, "target_beta_margin": target})


EXAMPLES = (
    Example("zoo underfitting, beta 5: median margin 7.6, policy moved 0.21 nats/token (5 x 0.21/0.5 = 2.1)",
            make_facts({"rewards/accuracies": 0.95, "margins_per_token": 0.21, "margins/q50": 7.6}, beta=5.0), True,
            beta=2.1),
    Example("accuracy 0.52, margin 0.01 nats/token: factor clipped to 1/10 (0.1 -> 0.01)",
            make_facts({"rewards/accuracies": 0.52, "margins_per_token": 0.01, "margins/q50": 0.001}), True, beta=0.01),
    Example("healthy: accuracy 0.94, 0.75 nats/token", make_facts({"rewards/accuracies": 0.94,
                                                                  "margins_per_token": 0.75, "margins/q50": 1.4}),
            False),
    Example("saturated but the policy moved a lot (trivially separable data, not underfitting)",
            make_facts({"rewards/accuracies": 1.0, "margins_per_token": 9.8, "margins/q50": 19.0}), False),
    Example("lr 1e-7: margins 2e-4, accuracy 0.62: the loss barely left ln 2 (lr x 100, the clip)",
            make_facts({"rewards/accuracies": 0.62, "margins_per_token": 1e-4, "margins/q50": 2e-4,
                        "rewards/margins": 2e-4},
                       log=[{"step": 4, "loss": 0.6931, "rewards/margins": 1e-4, "learning_rate": 1e-7}]), True),
    Example("SmolLM2 zoo likelihood_displacement: held-out margin -0.03, train margin 0.77: it learned, did not "
            "generalise", make_facts({"rewards/accuracies": 0.688, "margins_per_token": 0.006, "margins/q50": 0.0,
                                      "rewards/margins": -0.03},
                                     log=[{"step": 16, "loss": 0.413, "rewards/margins": 0.774}]), False),
    Example("zoo label_noise: margins 0.22, accuracy 0.59, 0.29 nats/token: learning (noise caps it)",
            make_facts({"rewards/accuracies": 0.594, "margins_per_token": 0.29, "margins/q50": 0.2,
                        "rewards/margins": 0.22}), False),
    Example("exactly the reference is DPO002's case", make_facts({"rewards/accuracies": 0.0, "margins_per_token": 0.0}),
            False),
    Example("SmolLM2 zoo label_noise (25% flipped): held-out accuracy 0.583 at 0.012 nats/token while the log shows "
            "the 40 train pairs fitted (accuracy 1.0): 0.583 is above the corpus-fitted 0.55, so no longer underfitting "
            "(the noise is DPO105's to name)",
            make_facts({"rewards/accuracies": 0.583, "margins_per_token": 0.0119, "margins/q50": 0.01,
                        "rewards/margins": 0.016},
                       log=[{"step": s, "loss": 0.45, "rewards/accuracies": 1.0, "rewards/margins": 0.3}
                            for s in (12, 14, 16)]), False),
    Example("the same log with held-out accuracy 0.53 at 0.012 nats/token: fires, and the advice says to look for "
            "noise first",
            make_facts({"rewards/accuracies": 0.53, "margins_per_token": 0.0119, "margins/q50": 0.01,
                        "rewards/margins": 0.016},
                       log=[{"step": s, "loss": 0.45, "rewards/accuracies": 1.0, "rewards/margins": 0.3}
                            for s in (12, 14, 16)]), True, beta=0.01),
)

RULE = Rule("DPO107", "underfitting", "underfitting", "warning", check, __doc__, EXAMPLES, reads=READS)
