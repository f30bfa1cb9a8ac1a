"""DPO002 no-learning: a trained checkpoint scores exactly like its reference.

What it detects
    The latest checkpoint after step 0 whose summed log-ratios on chosen and rejected and whose margins are all
    zero to within `atol` nats: the policy's log-probs equal the reference's on every pair, so nothing was learned.

Why it matters
    DPO's loss is ln 2 = 0.6931 when policy == reference, rewards and accuracies read 0.0, and every later metric is
    a no-op. Users report it as "loss fixed at 0.6931" (huggingface/trl#1311, huggingface/trl#1627;
    OpenRLHF/OpenRLHF#364); the causes are a learning rate of 0, beta = 0, no trainable parameters (a frozen LoRA
    adapter), chosen == rejected, or scanning with the checkpoint itself as `--ref`.

Evidence
    `drift/chosen`, `drift/rejected` (mean summed log-prob change vs the reference, nats) and `rewards/margins`,
    each with threshold `atol`; the reference value is the number of trained checkpoints that are identical.

Recommended fix
    Not a hyperparameter to tune: check that the weights can change (learning rate > 0, parameters with
    requires_grad, a LoRA adapter that is not frozen), that beta > 0 (a beta of 0 gets the suggestion 0.1, DPO's
    default), that chosen differs from rejected, and that `--ref` is the model the run started from, not this one.

References
    huggingface/trl#1311, huggingface/trl#1627, OpenRLHF/OpenRLHF#364 and Yifan-Song793/ETO#14 (loss fixed at
    0.6931, rewards and accuracies 0.0: #1627 had beta = 0, #1311 a LoRA policy that never left its reference; #364:
    ln 2 means r(chosen) = r(rejected)); DPO (Rafailov, Sharma, Mitchell, Ermon, Manning, Finn 2023, Direct
    Preference Optimization, arXiv:2305.18290): the loss at zero margin is -log sigma(0) = ln 2.
    GitHub threads: owner/repo#N is https://github.com/owner/repo/issues/N.
"""

from __future__ import annotations

import math

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

KEYS = ("drift/chosen", "drift/rejected", "rewards/margins")


def is_still(ckpt, atol: float) -> bool:
    values = [ckpt.get(k) for k in KEYS]
    return all(v is not None for v in values) and all(abs(v) <= atol for v in values)


def no_learning_fix(beta: float) -> Recommendation:
    """Shared with DPO201 (the same problem read from the log)."""
    return Recommendation(
        "Make sure training can change the policy: learning rate > 0, trainable parameters (LoRA adapter not "
        "frozen), beta > 0, chosen != rejected, and --ref is the starting model, not this checkpoint.",
        beta=0.1 if beta <= 0 else None, params={"current_beta": beta})


def check(facts: RunFacts, *, atol: float = 1e-6) -> Finding | None:
    trained = facts.trained
    if not trained or not is_still(trained[-1], atol):
        return None
    last = trained[-1]
    n_still = sum(is_still(c, atol) for c in trained)
    evidence = tuple(Evidence(k, last.get(k), atol, n_still) for k in KEYS)
    message = (f"{last.name} (step {last.step}) scores exactly like the reference: margins and chosen/rejected "
               f"log-ratios are 0 (|x| <= {fmt(atol)}); {n_still} of {len(trained)} trained checkpoints are identical "
               f"to it, so the loss sat at {_pinned(facts)}.")
    return Finding(message, evidence, no_learning_fix(facts.beta), last.name)


def _pinned(facts: RunFacts) -> str:
    value = facts.loss_at_zero_margin
    if value is None:
        return f"its {facts.loss_type} value at zero margin"
    return "ln 2 = 0.6931" if abs(value - math.log(2)) < 1e-12 else f"{fmt(value)} ({facts.loss_type} at zero margin)"


_ZERO = {"drift/chosen": 0.0, "drift/rejected": 0.0, "rewards/margins": 0.0, "rewards/accuracies": 0.0}
EXAMPLES = (
    Example("learning rate 0: every checkpoint equals the reference", make_facts(_ZERO, _ZERO), True),
    Example("beta 0 gets DPO's default back", make_facts(_ZERO, beta=0.0), True, beta=0.1),
    Example("a step-0 checkpoint equal to the reference is expected",
            make_facts(_ZERO, {"drift/chosen": -3.0, "drift/rejected": -9.0, "rewards/margins": 0.6},
                       steps=(0, 100)), False),
    Example("a policy that moved", make_facts({"drift/chosen": -0.5, "drift/rejected": -2.0,
                                               "rewards/margins": 0.15}), False),
)

RULE = Rule("DPO002", "no-learning", "no_learning", "error", check, __doc__, EXAMPLES, reads=KEYS)
