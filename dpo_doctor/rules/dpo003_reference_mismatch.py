"""DPO003 reference-mismatch: the reference scored against is not the model the run started from.

What it detects
    Any of:
    * a step-0 checkpoint whose per-token margin or chosen log-ratio differs from 0 by more than `step0_atol`
      nats/token (at step 0 the policy IS its reference, so both must be 0 up to dtype noise);
    * the first trained checkpoint more likely than the reference on BOTH chosen and rejected by more than
      `max_start_gain` nats/token (`drift_per_token/*`): DPO from the right reference lowers both sides
      (Rafailov et al. 2024); a reference weaker than the policy's start (the base model instead of the SFT model,
      or the base without the SFT adapter) raises both;
    * in the training log, huge margins immediately: the first logged train row (at step <= `first_step_max`)
      already has loss < `min_first_loss` or |rewards/margins| > `max_first_margin` (hiyouga/LlamaFactory#8974: loss
      0.0 and accuracy 1.0 from step 5 because the reference lacked the SFT adapter).

Why it matters
    Every implicit reward, margin, accuracy and drift is measured against the reference. With the wrong one they
    describe the gap between two unrelated models, not what DPO did, so every other finding is unreliable; if the
    trainer itself used the wrong reference, the KL anchor pulled towards the wrong model during training.

Evidence
    `margins_per_token` / `drift_per_token/chosen` at step 0, or `drift_per_token/chosen` and
    `drift_per_token/rejected` at the first checkpoint (threshold `max_start_gain`), or the first logged `loss`
    and `rewards/margins`.

Recommended fix
    Scan again with `--ref` set to the exact weights training started from (the SFT model; for DPO-LoRA on an
    SFT-LoRA, base + SFT adapter merged). If the trainer itself used that wrong reference, retrain with
    ref = the policy's initial weights. No beta change helps.

References
    hiyouga/LlamaFactory#8974 (DPO-LoRA on an SFT-LoRA scored against the base without the SFT adapter: loss 0.0
    and accuracy 1.0 from step 5); NVIDIA/NeMo-Aligner#228 (PR: step-0 rewards must be exactly 0); Rafailov, Hejna,
    Park, Finn 2024 (From r to Q*, arXiv:2404.12358: chosen log-ratio ~ -KL(ref||policy) <= 0 from the right
    reference).
    GitHub threads: owner/repo#N is https://github.com/owner/repo/issues/N.
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts

FIX = Recommendation("Scan with --ref set to the exact weights training started from (the SFT model, or base + SFT "
                     "adapter merged); if training itself used this reference, retrain with the right one.")
TRUST = " Every reference-relative metric (margins, accuracies, drift) is unreliable until this is fixed."


def _step0(facts: RunFacts, atol: float) -> Finding | None:
    zero = next((c for c in facts.checkpoints if c.step == 0), None)
    if zero is None:
        return None
    values = {k: zero.get(k) for k in ("margins_per_token", "drift_per_token/chosen")}
    off = {k: v for k, v in values.items() if v is not None and abs(v) > atol}
    if not off:
        return None
    ev = tuple(Evidence(k, v, atol, 0.0) for k, v in values.items() if v is not None)
    msg = (f"at step 0 the policy should equal its reference, but {', '.join(f'{k} = {fmt(v)}' for k, v in off.items())}"
           f" nats/token (tolerance {fmt(atol)}).")
    return Finding(msg + TRUST, ev, FIX, zero.name)


def _both_gain(facts: RunFacts, max_gain: float) -> Finding | None:
    first = facts.trained[0] if facts.trained else None
    if first is None:
        return None
    c, r = first.get("drift_per_token/chosen"), first.get("drift_per_token/rejected")
    if c is None or r is None or min(c, r) <= max_gain:
        return None
    ev = (Evidence("drift_per_token/chosen", c, max_gain, 0.0), Evidence("drift_per_token/rejected", r, max_gain, 0.0))
    msg = (f"already at {first.name} the policy is more likely than its reference on both chosen (+{fmt(c)}) and "
           f"rejected (+{fmt(r)}) nats/token; DPO from its own starting point lowers both, so this reference is "
           f"not the model the run started from (e.g. the base instead of the SFT model).")
    return Finding(msg + TRUST, ev, FIX, first.name)


def _log_start(facts: RunFacts, first_step_max: float, min_loss: float, max_margin: float) -> Finding | None:
    loss = facts.log("loss")
    if not loss or loss[0][0] > first_step_max:
        return None
    step, first_loss = loss[0]
    margins = dict(facts.log("rewards/margins"))
    margin = margins.get(step)
    if first_loss >= min_loss and (margin is None or abs(margin) <= max_margin):
        return None
    ev = (Evidence("loss", first_loss, min_loss, 0.6931), Evidence("rewards/margins", margin, max_margin, 0.0))
    msg = (f"the training log starts with loss {fmt(first_loss)} and margin {fmt(margin)} at step {step}: "
           f"near step 0 the policy is its reference (loss ln 2 = 0.693, margin 0), so the trainer's reference "
           f"was not the starting model.")
    return Finding(msg + TRUST, ev, FIX, None)


def check(facts: RunFacts, *, step0_atol: float = 0.02, max_start_gain: float = 0.5, first_step_max: float = 10,
          min_first_loss: float = 0.1, max_first_margin: float = 5.0) -> Finding | None:
    return (_step0(facts, step0_atol) or _both_gain(facts, max_start_gain)
            or _log_start(facts, first_step_max, min_first_loss, max_first_margin))


EXAMPLES = (
    Example("step-0 checkpoint with non-zero margins",
            make_facts({"margins_per_token": 0.4, "drift_per_token/chosen": 1.1}, steps=(0,)), True),
    Example("both sides more likely than the reference at the first checkpoint (zoo reference_mismatch)",
            make_facts({"drift_per_token/chosen": 1.55, "drift_per_token/rejected": 1.09},
                       {"drift_per_token/chosen": 1.57, "drift_per_token/rejected": 0.90}, steps=(32, 128)), True),
    Example("loss 0.0 from step 5 in the log (LlamaFactory #8974)",
            make_facts(log=[{"step": 5, "loss": 0.001, "rewards/margins": 14.0}, {"step": 10, "loss": 0.0}],
                       log_only=True), True),
    Example("healthy: both sides fall, step-0 exact, the log starts at ln 2",
            make_facts({"margins_per_token": 0.0, "drift_per_token/chosen": 0.0, "drift_per_token/rejected": 0.0},
                       {"drift_per_token/chosen": -0.5, "drift_per_token/rejected": -0.95}, steps=(0, 32),
                       log=[{"step": 4, "loss": 0.692, "rewards/margins": 0.002}]), False),
)

RULE = Rule("DPO003", "reference-mismatch", "reference_mismatch", "error", check, __doc__, EXAMPLES,
            reads=("margins_per_token", "drift_per_token/chosen", "drift_per_token/rejected"),
            log_reads=("loss", "rewards/margins"), source="both")
