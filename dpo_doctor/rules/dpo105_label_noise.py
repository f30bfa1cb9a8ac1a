"""DPO105 label-noise: a persistent share of pairs keeps a negative margin while the rest are learned.

What it detects
    At the last checkpoint at least `min_negative_frac` (0.3; 0.2 until the calibration corpus chose 0.3 on every
    leave-one-model-out fold, benchmarks/corpus/RESULTS.md) of the held-out pairs have a negative margin
    (`margins/negative_frac`), that share did not shrink since mid-run (last >= `persist_ratio` x the value at the
    middle checkpoint), the policy is learning the rest (`rewards/margins` > 0, and not both held-out accuracy below
    `min_accuracy` (0.6) and the beta-free per-token margin `margins_per_token` below `min_margin_per_token` (0.05
    nats/token): that is DPO107's "nothing learned", and half the pairs negative around a zero margin is no evidence
    of flipped labels), and, when the training log has
    them, train accuracies plateau at or below `max_train_acc` (the trainer cannot fit those pairs either; a
    memorised train set points to overfitting instead).

    Measured: tiny zoo label_noise (35% flipped, 256 pairs, 4 epochs) 41-45% of the 64 held-out pairs negative at
    every checkpoint, train accuracy 0.75: fires; no other tiny run does. SmolLM2 zoo (LoRA, 40 train pairs) never
    fires: its label_noise run (25% flipped) has 42-46% negative at a held-out margin of 0.016 (accuracy 0.58, 0.012
    nats/token: nothing learned, DPO107's case), and its healthy run already keeps 25-27% negative while memorising
    its train pairs (train accuracy 1.0), so neither the negative share nor the train plateau separates noise from
    a weak held-out signal at that scale (examples/zoo/README.md, "Real-model zoo"). Why the defaults transfer:
    shares of pairs and a dimensionless accuracy, read the same on any model; what does not transfer is whether a
    small run learns enough for the flips to stand out.

Why it matters
    Flipped labels are pairs that the true preference says DPO should lose. A model that learns the real
    preference keeps them negative forever, and plain DPO keeps pushing on them, which fights the rest of the
    data and inflates drift. cDPO and rDPO take the flip rate as a parameter.

Evidence
    `margins/negative_frac` at the last checkpoint (threshold `min_negative_frac`; reference value: the share at
    mid-run) and the train `rewards/accuracies` plateau from the log.

Recommended fix
    cDPO (`label_smoothing` = epsilon) with epsilon the estimated flip rate, taken as the persistent negative
    share at the last checkpoint, clipped to [0.05, 0.45] (the pairs a learned policy still ranks wrong are the
    flipped ones plus some true misses, so this is an upper estimate). cDPO's margins then plateau at
    beta h* = log((1 - epsilon) / epsilon). rDPO (loss `robust`, TRL's name) with the same epsilon is the unbiased alternative.
    Relabel or filter pairs with low annotator agreement if you have it.

References
    Mitchell 2023 (cDPO note: A note on DPO with noisy preferences and relationship to IPO,
    ericmitchell.ai/cdpo.pdf); Ray Chowdhury, Kini, Natarajan 2024 (rDPO: Provably Robust DPO, ICML,
    arXiv:2403.00409).
"""

from __future__ import annotations

import math

from dpo_doctor.rules.dpo103_overfitting import train_saturated
from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts


def check(facts: RunFacts, *, min_negative_frac: float = 0.3, persist_ratio: float = 0.75, max_train_acc: float = 0.9,
          tail: float = 3, min_accuracy: float = 0.6, min_margin_per_token: float = 0.05) -> Finding | None:
    pts = [(c, v) for c, v in facts.series("margins/negative_frac") if c.step > 0]
    if len(pts) < 2:
        return None
    last_ck, last = pts[-1]
    mid = pts[(len(pts) - 1) // 2][1]
    margin, per_token = last_ck.get("rewards/margins"), last_ck.get("margins_per_token")
    acc = last_ck.get("rewards/accuracies")
    if last < min_negative_frac or last < persist_ratio * mid or margin is None or margin <= 0:
        return None
    if acc is not None and per_token is not None and acc < min_accuracy and abs(per_token) < min_margin_per_token:
        return None  # nothing learned at all (DPO107's first path), so no "rest" that is learned
    saturated, _ = train_saturated(facts, tail, max_train_acc, -math.inf)
    if saturated:
        return None
    train_acc = facts.log("rewards/accuracies")
    acc_tail = sum(v for _, v in train_acc[-int(tail):]) / len(train_acc[-int(tail):]) if train_acc else None
    eps = min(max(last, 0.05), 0.45)
    evidence = (Evidence("margins/negative_frac", last, min_negative_frac, mid),
                Evidence("train/rewards/accuracies", acc_tail, max_train_acc, None))
    fix = Recommendation(
        f"Train with cDPO, label_smoothing {fmt(eps)} (the estimated flip rate; margins then plateau at "
        f"log((1-eps)/eps) = {fmt(math.log((1 - eps) / eps))}), or rDPO with the same epsilon; relabel low-agreement "
        f"pairs.", variant="cdpo", params={"label_smoothing": eps, "estimated_flip_rate": last})
    train = f"; train accuracy plateaus at {fmt(acc_tail)}" if acc_tail is not None else ""
    message = (f"label noise: {fmt(100 * last)}% of held-out pairs still have a negative margin at {last_ck.name} "
               f"({fmt(100 * mid)}% at mid-run) while the mean margin grows to {fmt(margin)}{train}.")
    # nothing learned (DPO107) leaves about half the pairs negative whatever the labels: listed after it
    return Finding(message, evidence, fix, last_ck.name, explained_by=("underfitting",))


def _ck(neg, margin=0.2):
    return {"margins/negative_frac": neg, "rewards/margins": margin}


def _log(acc):
    return [{"step": s, "loss": 0.5, "rewards/accuracies": acc} for s in (100, 200, 300, 400)]


EXAMPLES = (
    Example("zoo label_noise: 41-45% negative throughout, train accuracy 0.75 (epsilon 0.406)",
            make_facts(_ck(0.453, 0.05), _ck(0.406, 0.15), _ck(0.453, 0.19), _ck(0.406, 0.22), log=_log(0.75)), True,
            variant="cdpo"),
    Example("the negative tail shrinks as training goes on (healthy)",
            make_facts(_ck(0.35), _ck(0.25), _ck(0.12), _ck(0.06), log=_log(0.97)), False),
    Example("persistent tail but the train set is memorised (overfitting, not noise)",
            make_facts(_ck(0.27), _ck(0.33), _ck(0.33), log=_log(1.0)), False),
    Example("no margin gained at all (underfitting / no learning)", make_facts(_ck(0.5, 0.0), _ck(0.5, -0.01)), False),
    Example("SmolLM2 pilot, 117 noisy pairs for 16 LoRA steps: half the pairs negative around a margin of 0.005 "
            "(0.0002 nats/token): nothing learned, not noise",
            make_facts({**_ck(0.458, 0.007), "margins_per_token": 0.0003, "rewards/accuracies": 0.542},
                       {**_ck(0.5, 0.005), "margins_per_token": 0.0002, "rewards/accuracies": 0.5}), False),
)

RULE = Rule("DPO105", "label-noise", "label_noise", "warning", check, __doc__, EXAMPLES,
            reads=("margins/negative_frac", "rewards/margins", "margins_per_token", "rewards/accuracies"),
            log_reads=("rewards/accuracies", "loss"))
