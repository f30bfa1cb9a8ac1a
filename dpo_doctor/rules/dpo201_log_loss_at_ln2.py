"""DPO201 log-loss-at-ln2: the training loss never leaves ln 2 = 0.6931 (from the training log).

What it detects
    The loss value is the run's loss type's at zero margin (`loss_type` from the run's settings): ln 2 for sigmoid
    (and robust, aot, sigmoid_norm), 1 for hinge and APO, 1/(4 beta^2) for IPO, 2 ln 2 for NCA and BCO pairs,
    0.5/beta^2 for SPPO-hard; for a loss without one (sft mixed in, exo_pair) only the margins decide.
    Every train-loss row after the first `skip_frac` of logged steps lies within `tol` of ln 2 (at least `min_rows`
    rows) and, when the log has `rewards/margins`, every one of those rows' margins is 0 to within `margin_atol`.
    Read from `trainer_state.json` alone, so it works when no model can be loaded.

    Why the margin test (scale-free): near ln 2 the loss is ln 2 - m/2 for a beta-scaled margin m, so a loss
    within `tol` = 0.002 of ln 2 only says |m| < 0.004; a run at lr 1e-7 logs margins of 2e-4 and a loss of
    0.6930: it learns, too slowly (DPO107 underfitting, with a computed learning-rate change), not "nothing".
    A policy that equals its reference logs margins of exactly 0 on any model (lr 0 and beta 0 in the zoo and the
    tests: 0.0), so `margin_atol` 1e-6 is a float-noise bound, not a scale.

Why it matters
    -log sigma(0) = ln 2: a DPO loss pinned there means every margin is 0, i.e. the policy equals its reference
    (no trainable parameters, a frozen adapter, a learning rate or beta of 0, chosen == rejected, or a cached
    reference that was ignored: huggingface/trl#1311, huggingface/trl#1627, huggingface/trl#1962;
    OpenRLHF/OpenRLHF#364).

Evidence
    `loss`: the largest deviation from ln 2 (threshold `tol`, reference value ln 2); `rewards/margins` at the end
    when logged.

Recommended fix
    As DPO002: make sure training can change the policy (LR > 0, trainable parameters, beta > 0, distinct pairs,
    a reference that is not the policy).

References
    huggingface/trl#1311, huggingface/trl#1627, OpenRLHF/OpenRLHF#364 and Yifan-Song793/ETO#14 (loss fixed at
    0.6931; #1627 had beta = 0); huggingface/trl#1962, huggingface/trl#2423 and huggingface/trl#6443 (PR) (loss
    0.6931 with `precompute_ref_log_probs`: cached reference log-probs ignored or dropped, or an eval reference
    computed with the trained policy); DPO loss at zero margin = ln 2 (Rafailov et al. 2023, arXiv:2305.18290).
    GitHub threads: owner/repo#N is https://github.com/owner/repo/issues/N.
"""

from __future__ import annotations

from dpo_doctor.rules.dpo002_no_learning import no_learning_fix
from dpo_doctor.rules.records import LN2, Evidence, Example, Finding, RunFacts, Rule, fmt, make_facts


def check(facts: RunFacts, *, tol: float = 0.002, skip_frac: float = 0.1, min_rows: float = 3,
          margin_atol: float = 1e-6) -> Finding | None:
    rows = facts.log("loss")
    if not rows:
        return None
    start = rows[0][0] + skip_frac * (rows[-1][0] - rows[0][0])
    kept = [(s, v) for s, v in rows if s >= start]
    if len(kept) < min_rows:
        return None
    margins = facts.log("rewards/margins")
    if any(abs(v) > margin_atol for s, v in margins if s >= start):
        return None  # the policy moved (slowly): underfitting, not no-learning
    pinned = facts.loss_at_zero_margin  # ln 2 for sigmoid; 1 for hinge; 1/(4 beta^2) for IPO; None: not defined
    if pinned is None:
        if not [v for s, v in margins if s >= start]:
            return None  # a loss with no zero-margin value (sft mixed in, exo_pair) and no margins: cannot tell
        worst, where = 0.0, f"its {facts.loss_type} loss has no fixed zero-margin value; the logged margins were 0"
    else:
        worst = max(abs(v - pinned) for _, v in kept)
        if worst > tol * max(1.0, pinned / LN2):
            return None
        where = f"the training loss stayed within {fmt(worst)} of {_name(facts, pinned)}"
    evidence = (Evidence("loss", max(kept, key=lambda r: abs(r[1] - (pinned or 0.0)))[1], tol, pinned),
                Evidence("rewards/margins", margins[-1][1] if margins else None, None, 0.0))
    message = (f"{where} for all {len(kept)} logged steps from step {kept[0][0]} to {kept[-1][0]}: the policy never "
               f"moved from its reference (from the training log).")
    return Finding(message, evidence, no_learning_fix(facts.beta), None)


def _name(facts: RunFacts, pinned: float) -> str:
    """ln 2 = 0.6931 for sigmoid DPO; the loss type's own zero-margin value otherwise."""
    if abs(pinned - LN2) < 1e-12:
        return "ln 2 = 0.6931"
    return f"{fmt(pinned)}, the {facts.loss_type} loss at zero margin"


def _log(losses):
    return [{"step": 10 * (i + 1), "loss": v, "rewards/margins": 0.0} for i, v in enumerate(losses)]


EXAMPLES = (
    Example("loss 0.6931 throughout (trl #1627, beta 0)", make_facts(log=_log([0.6931] * 8), log_only=True, beta=0.0),
            True, beta=0.1),
    Example("loss leaves ln 2 after warm-up", make_facts(log=_log([0.6931, 0.69, 0.62, 0.55, 0.5, 0.45]),
                                                         log_only=True), False),
    Example("IPO at beta 0.5 pinned at 1/(4 beta^2) = 1.0", make_facts(log=_log([1.0] * 8), log_only=True, beta=0.5,
                                                                      loss_type="ipo"), True, beta=None),
    Example("IPO loss 0.69 is not IPO's zero-margin value",
            make_facts(log=[{"step": 10 * (i + 1), "loss": 0.6931, "rewards/margins": 0.3} for i in range(8)],
                       log_only=True, beta=0.5, loss_type="ipo"), False),
    Example("too few rows to judge", make_facts(log=_log([0.6931, 0.6931]), log_only=True), False),
    Example("lr 1e-7: loss 0.6930, margins 2e-4: slow learning (DPO107), not no-learning",
            make_facts(log=[{"step": 10 * (i + 1), "loss": 0.6931 - 1e-4 * i / 8, "rewards/margins": 2e-4 * i / 8}
                            for i in range(8)], log_only=True), False),
)

RULE = Rule("DPO201", "log-loss-at-ln2", "no_learning", "error", check, __doc__, EXAMPLES,
            log_reads=("loss", "rewards/margins"), source="log")
