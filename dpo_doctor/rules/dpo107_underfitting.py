"""DPO107 underfitting: after training the policy barely separates chosen from rejected.

What it detects
    At the last trained checkpoint (excluding the exact no-op that DPO002 reports), either:
    * held-out accuracy below `min_accuracy` (0.6) with a per-token margin (`margins_per_token`, beta-free) below
      `min_margin_per_token` nats/token: the ranking is barely learned;
    * a saturated loss: the median beta-scaled margin (`margins/q50`) >= `saturated_margin` (sigma(5) = 0.993, so
      the typical pair no longer produces a gradient) while the beta-free per-token margin stays below
      `max_margin_per_token`: beta is so high the loss saturates before the policy moves.

Why it matters
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

References
    Rafailov, Sharma, Mitchell, Ermon, Manning, Finn 2023 (DPO, arXiv:2305.18290: beta 0.1-0.5); Meng, Xia, Chen
    2024 (SimPO, arXiv:2405.14734; its README, princeton-nlp/SimPO: DPO beta 0.01); allenai/reward-bench#93,
    huggingface/smol-course#307 (PR) and modelscope/ms-swift#7285 (which beta, and its direction: higher beta =
    closer to ref, as TRL's `DPOConfig` docstring says).
    GitHub threads: owner/repo#N is https://github.com/owner/repo/issues/N.
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

READS = ("rewards/accuracies", "margins_per_token", "margins/q50", "gen/kl_mean")


def _reason(ck, min_accuracy, min_margin, saturated_margin, max_margin) -> tuple[str, tuple] | None:
    acc, m, q50 = ck.get("rewards/accuracies"), ck.get("margins_per_token"), ck.get("margins/q50")
    if m is None or abs(m) <= 1e-9:  # exactly the reference: DPO002's case
        return None
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


def check(facts: RunFacts, *, min_accuracy: float = 0.6, min_margin_per_token: float = 0.05,
          saturated_margin: float = 5.0, max_margin_per_token: float = 0.3, target_margin_per_token: float = 0.5,
          max_beta_cut: float = 10.0, min_beta_cut: float = 2.0) -> Finding | None:
    if not facts.trained:
        return None
    ck = facts.trained[-1]
    found = _reason(ck, min_accuracy, min_margin_per_token, saturated_margin, max_margin_per_token)
    if found is None:
        return None
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
    return Finding(f"underfitting at {ck.name}: {found[0]}.", evidence, fix, ck.name)


EXAMPLES = (
    Example("zoo underfitting, beta 5: median margin 7.6, policy moved 0.21 nats/token (5 x 0.21/0.5 = 2.1)",
            make_facts({"rewards/accuracies": 0.95, "margins_per_token": 0.21, "margins/q50": 7.6}, beta=5.0), True,
            beta=2.1),
    Example("accuracy 0.55, margin 0.01 nats/token: factor clipped to 1/10 (0.1 -> 0.01)",
            make_facts({"rewards/accuracies": 0.55, "margins_per_token": 0.01, "margins/q50": 0.001}), True, beta=0.01),
    Example("healthy: accuracy 0.94, 0.75 nats/token", make_facts({"rewards/accuracies": 0.94,
                                                                  "margins_per_token": 0.75, "margins/q50": 1.4}),
            False),
    Example("saturated but the policy moved a lot (trivially separable data, not underfitting)",
            make_facts({"rewards/accuracies": 1.0, "margins_per_token": 9.8, "margins/q50": 19.0}), False),
    Example("exactly the reference is DPO002's case", make_facts({"rewards/accuracies": 0.0, "margins_per_token": 0.0}),
            False),
)

RULE = Rule("DPO107", "underfitting", "underfitting", "warning", check, __doc__, EXAMPLES, reads=READS)
