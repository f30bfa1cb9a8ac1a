"""Truth per run from measured OUTCOMES (measures.json), never from the injected data kind.

Every checkpoint and the reference were measured on the grading questions (which neither training nor any scan
sees) and on the held-out pairs (train_one.measure). A run's truth labels:

* quality fell  : the run's best point is the checkpoint with the most graded quality, or the REFERENCE when it beats
                  every checkpoint (it is the run's step 0: the KL = 0 end of DPO's quality-vs-KL hump). Quality fell
                  when the last checkpoint is below that best point by at least MIN_FALL (5 points) with a paired
                  Student-t 95% interval (over the grading questions, every model answers the same ones) above 0.
                  Its mechanisms are the ones the measurements support, in the issue's order (issue 20, section 3;
                  both when both hold, the first is the primary):
    - over_optimization when the sampled KL to the reference rose with the fall: at the last checkpoint at least twice
      the best point's and at least MOVED (0.1 nats per answer; the reference's own KL is 0);
    - likelihood_displacement when the held-out CHOSEN answers lost at least 1 nat each at the last checkpoint and
      more than at the best point;
    - capability_regression when neither holds.
* length_exploitation: the last checkpoint's mean sampled answer is >= 1.3x the reference's (same prompts).
* mode_collapse: distinct-2 of the last checkpoint's samples <= 0.6x the reference's, or its share of distinct
  answers <= 0.5x the reference's.
* label_noise (a property of the data, measured by the grader): >= 15% of the held-out pairs have a chosen answer
  the grader marks wrong and a rejected one it marks right.
* underfitting: nothing moved: sampled KL at the last checkpoint < MOVED (0.1 nats per answer) and graded quality not
  significantly above the reference's (paired 95% interval).
`primary` is the first of: mode_collapse, length_exploitation, the quality-fall mechanisms, label_noise, underfitting,
else healthy (an injection that did not take reads as healthy).

History (benchmarks/corpus/RESULTS.md gives the numbers under both): until 2026-12-06 evening a fall below the
reference was always "capability_regression" whatever the KL, a fall had one mechanism, tried displacement first, and
underfitting also needed an implicit-reward margin under 0.05 (a run with KL -0.004 and the same graded answers at
every checkpoint read "healthy" at a margin of 0.051). Issue 20 names the order (over-optimization when KL rose with
the fall, likelihood displacement when the chosen answers fell, capability regression otherwise) and expects an
over-optimization finding on a run whose answers fell from 70% to 22% correct, below its reference, while its KL
peaked at 2.5 nats per token.
"""

from __future__ import annotations

import math

MIN_FALL = 0.05
MOVED = 0.1  # nats of sampled KL per answer: below it the policy's samples did not move from the reference's
T95 = {n: v for n, v in ((5, 2.571), (10, 2.228), (15, 2.131), (20, 2.086), (25, 2.060), (30, 2.042),
                         (40, 2.021), (60, 2.000), (120, 1.980))}


def t95(df: int) -> float:
    for n in sorted(T95):
        if df <= n:
            return T95[n]
    return 1.96


def paired(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean of a - b per question and its Student-t 95% interval."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    half = t95(n - 1) * math.sqrt(var / n)
    return mean, mean - half, mean + half


def label(measures: dict, pairs_graded: dict | None = None) -> dict:
    models = measures["models"]
    ref = models["reference"]
    cks = sorted((k for k in models if k != "reference"), key=lambda k: models[k]["step"])
    q = {k: models[k]["quality"] for k in cks}
    best = max(cks, key=lambda k: (q[k], -models[k]["step"]))
    last = cks[-1]
    m_last, m_best = models[last], models[best]
    ref_is_top = ref["quality"] > m_best["quality"]
    top = {**ref, "kl": 0.0, "drift_chosen": 0.0} if ref_is_top else m_best
    fall, lo, hi = paired(top["per_question"], m_last["per_question"])
    vs_ref, vs_ref_lo, vs_ref_hi = paired(m_last["per_question"], ref["per_question"])
    labels: list[str] = []
    quality_fell = (ref_is_top or best != last) and lo > 0 and fall >= MIN_FALL
    mechanisms: list[str] = []
    if quality_fell:
        if m_last["kl"] >= max(2 * top["kl"], MOVED):
            mechanisms.append("over_optimization")
        if m_last["drift_chosen"] <= -1.0 and m_last["drift_chosen"] < top["drift_chosen"]:
            mechanisms.append("likelihood_displacement")
        mechanisms = mechanisms or ["capability_regression"]
    mechanism = mechanisms[0] if mechanisms else None
    len_ratio = m_last["gen_len"] / max(ref["gen_len"], 1e-9)
    d2_ratio = m_last["distinct2"] / max(ref["distinct2"], 1e-9)
    ans_ratio = m_last["distinct_answers"] / max(ref["distinct_answers"], 1e-9)
    if d2_ratio <= 0.6 or ans_ratio <= 0.5:
        labels.append("mode_collapse")
    if len_ratio >= 1.3:
        labels.append("length_exploitation")
    labels += mechanisms
    below_ref = vs_ref_hi < 0 and vs_ref <= -MIN_FALL
    flip_frac = (pairs_graded or {}).get("flipped_frac")
    if flip_frac is not None and flip_frac >= 0.15:
        labels.append("label_noise")
    if m_last["kl"] < MOVED and not vs_ref_lo > 0:
        labels.append("underfitting")
    return {
        "primary": labels[0] if labels else "healthy", "labels": labels,
        "quality_fell": quality_fell, "below_reference": below_ref, "best": best, "last": last,
        "fall_from": "reference" if ref_is_top else best, "mechanism": mechanism,
        "fall_points": round(100 * fall, 1), "fall_ci_points": [round(100 * lo, 1), round(100 * hi, 1)],
        "last_vs_ref_points": round(100 * vs_ref, 1), "last_vs_ref_ci_points": [round(100 * vs_ref_lo, 1),
                                                                                round(100 * vs_ref_hi, 1)],
        "len_ratio": round(len_ratio, 3), "distinct2_ratio": round(d2_ratio, 3),
        "distinct_answers_ratio": round(ans_ratio, 3), "flipped_frac": flip_frac,
        "quality": {"reference": round(ref["quality"], 4), **{k: round(q[k], 4) for k in cks}},
        "kl": {k: round(models[k]["kl"], 3) for k in cks},
        "drift_chosen": {k: round(models[k]["drift_chosen"], 3) for k in cks},
        "drift_rejected": {k: round(models[k]["drift_rejected"], 3) for k in cks},
        "gen_len": {"reference": round(ref["gen_len"], 2), **{k: round(models[k]["gen_len"], 2) for k in cks}},
        "distinct2": {"reference": round(ref["distinct2"], 3), **{k: round(models[k]["distinct2"], 3) for k in cks}},
        "reward_acc": {k: round(models[k]["reward_acc"], 3) for k in cks},
        "n_questions": len(ref["per_question"]),
    }
