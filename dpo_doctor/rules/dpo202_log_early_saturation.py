"""DPO202 log-early-saturation: train loss near 0 with accuracy 1.0 early in training (from the training log).

What it detects
    The first logged train step from which `consecutive` rows in a row have loss < `max_loss` and
    `rewards/accuracies` >= 0.999 comes within the first `early_frac` of the logged steps.

Why it matters
    When the loss collapses to 0 that fast the pairs are trivially separable (a shortcut such as length or a
    canned answer), the learning rate is too high, or the data is off-policy enough that the implicit KL gives way;
    the policy then runs to unbounded margins and little transferable preference is learned (huggingface/trl#1236,
    huggingface/trl#2003; zhyang2226/OPA-DPO#10). Train accuracy says nothing about held-out quality here.

Evidence
    Train `loss` and `rewards/accuracies` at that step (thresholds `max_loss` and 1.0), the step as a fraction of
    the run (reference value).

Recommended fix
    Lower the learning rate and stop early; bound the margins with cDPO (label_smoothing 0.1: the optimum margin
    is log(0.9/0.1) = 2.2 instead of infinity) or IPO; check the data for a shortcut (length skew, identical
    openers) and prefer on-policy pairs.

References
    huggingface/trl#1236 and zhyang2226/OPA-DPO#10 (loss -> 0, accuracies 1.0, margins 10-23 at LR 8e-5; the
    OPA-DPO author: off-policy pairs collapse the loss fast through the implicit KL, lower the LR, use on-policy
    data); huggingface/trl#2003 and hiyouga/LlamaFactory#5321 (accuracy at 1.0 quickly: trivially separable);
    Azar et al. 2024 (IPO, arXiv:2310.12036); Mitchell 2023 (cDPO note, ericmitchell.ai/cdpo.pdf).
    GitHub threads: owner/repo#N is https://github.com/owner/repo/issues/N.
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts


def _first_saturated(loss: list, acc: dict, max_loss: float, consecutive: int) -> int | None:
    run = 0
    for i, (step, value) in enumerate(loss):
        run = run + 1 if value < max_loss and acc.get(step, 0.0) >= 0.999 else 0
        if run >= consecutive:
            return i - consecutive + 1
    return None


def check(facts: RunFacts, *, max_loss: float = 0.05, early_frac: float = 0.25, consecutive: float = 2) -> Finding | None:
    loss, acc = facts.log("loss"), dict(facts.log("rewards/accuracies"))
    if len(loss) < 4 or not acc:
        return None
    i = _first_saturated(loss, acc, max_loss, int(consecutive))
    if i is None:
        return None
    step, first, last = loss[i][0], loss[0][0], loss[-1][0]
    frac = (step - first) / max(last - first, 1)
    if frac > early_frac:
        return None
    evidence = (Evidence("loss", loss[i][1], max_loss, None), Evidence("rewards/accuracies", acc[step], 1.0, None),
                Evidence("log/saturation_step_frac", frac, early_frac, None))
    fix = Recommendation(
        "Lower the learning rate and stop early; bound margins with cDPO (label_smoothing 0.1, optimum margin "
        "log 9 = 2.2) or IPO; check the data for a shortcut (length skew, canned answers).",
        variant="cdpo", params={"label_smoothing": 0.1, "saturation_step": step})
    message = (f"train loss fell to {fmt(loss[i][1])} with accuracy 1.0 by step {step}, {fmt(100 * frac)}% into "
               f"training: the pairs are trivially separable or the learning rate is too high (from the training log).")
    return Finding(message, evidence, fix, None)


def _log(losses, acc):
    return [{"step": 10 * (i + 1), "loss": v, "rewards/accuracies": a} for i, (v, a) in enumerate(zip(losses, acc))]


EXAMPLES = (
    Example("loss 0.01, accuracy 1.0 from step 20 of 120 (trl #1236)",
            make_facts(log=_log([0.6, 0.01, 0.004, 0.002] + [0.001] * 8, [0.6] + [1.0] * 11), log_only=True), True,
            variant="cdpo"),
    Example("healthy: loss falls slowly to 0.2", make_facts(log=_log([0.69 - 0.04 * i for i in range(12)],
                                                                     [0.6 + 0.03 * i for i in range(12)]),
                                                            log_only=True), False),
    Example("one lucky batch is not saturation",
            make_facts(log=_log([0.6, 0.03, 0.4, 0.35, 0.3, 0.3, 0.3, 0.3], [0.6, 1.0, 0.8, 0.8, 0.9, 0.9, 0.9, 0.9]),
                       log_only=True), False),
)

RULE = Rule("DPO202", "log-early-saturation", "overfitting", "warning", check, __doc__, EXAMPLES,
            log_reads=("loss", "rewards/accuracies"), source="log")
