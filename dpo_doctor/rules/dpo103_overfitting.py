"""DPO103 overfitting: the training pairs are memorised while held-out preference gets worse.

What it detects
    Either of:
    * the held-out loss rises after its minimum while the train side saturates (the mean train
      `rewards/accuracies` of the last `tail` logged rows >= `train_acc_min` or their mean train loss <=
      `train_loss_max`). With a scan, the rise is a paired test on the scanned pairs: the last checkpoint's per-pair
      DPO loss is at least `min_rise` nats and `min_rise_z` (2) standard errors of the paired difference above the
      lowest-loss checkpoint's (`heldout/dpo_loss_rise` / `heldout/dpo_loss_rise_se`). Without one (a log-only
      check), the logged eval loss must end more than `rise_frac` (10%) and `min_rise` above its minimum.
      Why the test transfers: a z statistic means the same on any model and number of pairs, where a 10% rise is
      noise on a small eval set and a large shift on a big one. Measured (paired rise / SE): tiny zoo overfitting
      0.206 / 0.075 = 2.7 (fires); likelihood_displacement 0.022 / 0.014 = 1.5 (its logged eval loss rose 19%,
      0.124 -> 0.147, which the old 10% rule called overfitting); reference_mismatch 0.1; every other tiny and
      SmolLM2 zoo run ends at its lowest held-out loss (0);
    * from the checkpoints: held-out `rewards/accuracies` falls by at least `acc_drop` from an earlier peak, with the
      train accuracy saturated as above (without a log, a drop of twice `acc_drop` is required), and by at least
      `min_pairs` pairs of the held-out set: on 8 pairs one pair is 0.125 of accuracy, and one pair changing side
      between two checkpoints is noise, not a trend.

Why it matters
    With near-deterministic preferences DPO's logit link pushes margins without bound and the KL term stops
    holding the policy (Azar et al. 2024): train accuracy -> 1, train loss -> 0, margins grow, eval loss rises.
    Multi-epoch runs show it as train loss dropping at each epoch start while eval loss rises
    (huggingface/alignment-handbook#38).

Evidence
    The last eval `loss` (threshold: min x (1 + rise_frac); reference value: the minimum), the train
    `rewards/accuracies` of the last rows, and/or the held-out `rewards/accuracies` (reference value: its peak).

Recommended fix
    Ship the checkpoint at the held-out peak and stop there (`params.ship_step`; `best_checkpoint` ships the same
    one). For the next run use IPO, whose margin converges to
    1/(2 tau) instead of growing without bound; TRL's IPO margin is per token, so set tau = 1 / (2 m) with m the
    per-token margin (`margins_per_token`, nats/token) at the peak checkpoint: the margin the run had when it
    generalised best becomes IPO's target. Without that metric: cDPO with label_smoothing 0.1 (margins plateau at
    log(0.9/0.1) = 2.2).

References
    Azar, Rowland, Piot, Guo, Calandriello, Valko, Munos 2024 (IPO, AISTATS, arXiv:2310.12036); Mitchell 2023
    (cDPO: A note on DPO with noisy preferences and relationship to IPO, ericmitchell.ai/cdpo.pdf);
    huggingface/trl#1236 and zhyang2226/OPA-DPO#10 (loss -> 0, accuracies 1.0, margins 10-23 at a high LR);
    huggingface/alignment-handbook#38 (train loss drops at each epoch start while eval loss rises).
    GitHub threads: owner/repo#N is https://github.com/owner/repo/issues/N.
"""

from __future__ import annotations

from dpo_doctor.rules.records import Evidence, Example, Finding, Recommendation, RunFacts, Rule, fmt, make_facts


def _tail_mean(rows: list[tuple[int, float]], tail: int) -> float | None:
    vals = [v for _, v in rows[-int(tail):]]
    return sum(vals) / len(vals) if vals else None


def train_saturated(facts: RunFacts, tail: float, acc_min: float, loss_max: float) -> tuple[bool | None, Evidence | None]:
    """Whether the train side is memorised (None without a train log), with its evidence."""
    acc, loss = _tail_mean(facts.log("rewards/accuracies"), tail), _tail_mean(facts.log("loss"), tail)
    if acc is None and loss is None:
        return None, None
    if acc is not None and acc >= acc_min:
        return True, Evidence("train/rewards/accuracies", acc, acc_min, None)
    if loss is not None and loss <= loss_max:
        return True, Evidence("train/loss", loss, loss_max, None)
    return False, None


def _scan_loss_rise(facts: RunFacts, min_rise_z: float, min_rise: float) -> tuple[Evidence, str, int] | None:
    """The scan's paired test: the last checkpoint's per-pair held-out DPO loss rose over the lowest-loss checkpoint
    by at least `min_rise` nats and `min_rise_z` standard errors of the paired difference."""
    last = facts.trained[-1] if facts.trained else None
    rise, se = (last.get("heldout/dpo_loss_rise"), last.get("heldout/dpo_loss_rise_se")) if last else (None, None)
    if rise is None or se is None or rise < min_rise or rise < min_rise_z * se:
        return None
    loss = last.get("heldout/dpo_loss")
    best = min((c for c in facts.trained if c.get("heldout/dpo_loss") is not None),
               key=lambda c: c.get("heldout/dpo_loss"))
    z = rise / se if se > 0 else float("inf")
    return (Evidence("heldout/dpo_loss", loss, best.get("heldout/dpo_loss") + min_rise_z * se,
                     best.get("heldout/dpo_loss")),
            f"held-out loss rose from {fmt(best.get('heldout/dpo_loss'))} at {best.name} to {fmt(loss)} at "
            f"{last.name} ({fmt(z)} standard errors of the paired change over the scanned pairs)", best.step)


def _eval_loss_rise(facts: RunFacts, rise_frac: float, min_rise: float) -> tuple[Evidence, str, int] | None:
    rows = facts.log("loss", split="eval")
    if len(rows) < 3:
        return None
    step_min, low = min(rows, key=lambda r: r[1])
    last_step, last = rows[-1]
    if step_min == last_step or last <= low * (1 + rise_frac) or last - low < min_rise:
        return None
    return (Evidence("eval/loss", last, low * (1 + rise_frac), low),
            f"held-out loss rose from {fmt(low)} at step {step_min} to {fmt(last)} at step {last_step}", step_min)


def _acc_drop(facts: RunFacts, drop: float, min_pairs: float) -> tuple[Evidence, str, object] | None:
    drop = facts.accuracy_step(drop, min_pairs)
    pts = [(c, v) for c, v in facts.series("rewards/accuracies") if c.step > 0]
    if len(pts) < 2:
        return None
    peak_ck, peak = max(pts, key=lambda p: p[1])
    last_ck, last = pts[-1]
    if peak_ck is last_ck or last > peak - drop:
        return None
    return (Evidence("rewards/accuracies", last, peak - drop, peak),
            f"held-out accuracy fell from {fmt(peak)} at {peak_ck.name} to {fmt(last)}", peak_ck)


def _fix(facts: RunFacts, peak_ck) -> Recommendation:
    m = peak_ck.get("margins_per_token") if peak_ck is not None else None
    where = peak_ck.name if peak_ck is not None else "the held-out peak"
    if m is not None and m > 0:
        tau = 1.0 / (2.0 * m)
        return Recommendation(
            f"Ship {where} and stop there; next run use IPO with tau {fmt(tau)} (= 1 / (2 x per-token margin "
            f"{fmt(m)} at the peak)) so margins stop growing.",
            beta=tau, variant="ipo", params={"target_margin_per_token": m, "ship_step": peak_ck.step})
    return Recommendation(f"Ship {where} and stop there; next run use cDPO with label_smoothing 0.1 (margins plateau "
                          f"at log 9 = 2.2) or IPO.", variant="cdpo",
                          params={"label_smoothing": 0.1, "ship_step": peak_ck.step if peak_ck is not None else None})


def check(facts: RunFacts, *, rise_frac: float = 0.1, min_rise: float = 0.02, acc_drop: float = 0.05,
          train_acc_min: float = 0.95, train_loss_max: float = 0.1, tail: float = 3,
          min_pairs: float = 2, min_rise_z: float = 2.0) -> Finding | None:
    saturated, sat_ev = train_saturated(facts, tail, train_acc_min, train_loss_max)
    if saturated is False:
        return None
    found = []
    scanned = bool(facts.trained) and facts.trained[-1].get("heldout/dpo_loss_rise_se") is not None
    if not saturated:
        rise = None
    elif scanned:  # the scan's paired test on the scanned pairs supersedes the log's fixed 10%
        rise = _scan_loss_rise(facts, min_rise_z, min_rise)
    else:
        rise = _eval_loss_rise(facts, rise_frac, min_rise)
    if rise:
        found.append(rise)
    drop = _acc_drop(facts, acc_drop if saturated else 2 * acc_drop, min_pairs)
    if drop:
        found.append(drop)
    if not found:
        return None
    peak_ck = drop[2] if drop else _checkpoint_near(facts, rise[2])
    evidence = tuple(f[0] for f in found) + ((sat_ev,) if sat_ev else ())
    train = f" while train accuracy/loss saturated ({sat_ev.metric} {fmt(sat_ev.value)})" if sat_ev else ""
    last = facts.last.name if facts.last else None
    message = "overfitting: " + "; ".join(f[1] for f in found) + train + "."
    return Finding(message, evidence, _fix(facts, peak_ck), last)


def _checkpoint_near(facts: RunFacts, step: int):
    """The checkpoint at or just before a logged step (the one to ship at the eval-loss minimum)."""
    before = [c for c in facts.trained if c.step <= step]
    return before[-1] if before else (facts.trained[0] if facts.trained else None)


def _log(eval_losses, train_acc, train_loss=0.01):
    rows = [{"step": 12 * (i + 1), "split": "eval", "loss": v} for i, v in enumerate(eval_losses)]
    return rows + [{"step": 12 * (i + 1), "split": "train", "loss": train_loss, "rewards/accuracies": train_acc}
                   for i in range(len(eval_losses))]


def _scan(loss, rise, se, acc):
    return {"heldout/dpo_loss": loss, "heldout/dpo_loss_rise": rise, "heldout/dpo_loss_rise_se": se,
            "rewards/accuracies": acc}


EXAMPLES = (
    Example("zoo overfitting: eval loss 0.497 -> 0.704, train acc 1.0, held-out acc 0.734 -> 0.672 (tau 1/(2x0.541))",
            make_facts({"rewards/accuracies": 0.734, "margins_per_token": 0.541},
                       {"rewards/accuracies": 0.672, "margins_per_token": 0.67}, steps=(24, 120),
                       log=_log([0.515, 0.497, 0.566, 0.70], 1.0)), True, beta=0.924, variant="ipo"),
    Example("eval loss keeps falling, train acc 0.97 (healthy)",
            make_facts({"rewards/accuracies": 0.9}, {"rewards/accuracies": 0.94}, log=_log([0.40, 0.35, 0.30], 0.97, 0.25)),
            False),
    Example("held-out accuracy dips but the train side is not saturated (label noise, not memorisation)",
            make_facts({"rewards/accuracies": 0.66}, {"rewards/accuracies": 0.55}, log=_log([0.7, 0.66, 0.7], 0.75, 0.5)),
            False),
    Example("8 held-out pairs, train saturated, one pair changes side (1.0 -> 0.875): noise, not flagged",
            make_facts({"rewards/accuracies": 1.0}, {"rewards/accuracies": 0.875}, log=_log([0.3, 0.25, 0.24], 1.0),
                       n_pairs=8), False),
    Example("64 held-out pairs, train saturated, five pairs change side (0.953 -> 0.875)",
            make_facts({"rewards/accuracies": 0.953}, {"rewards/accuracies": 0.875}, log=_log([0.3, 0.25, 0.24], 1.0),
                       n_pairs=64), True),
    Example("no log: a large held-out accuracy drop is enough",
            make_facts({"rewards/accuracies": 0.85}, {"rewards/accuracies": 0.70}), True),
    Example("tiny zoo overfitting, scanned: per-pair loss 0.497 -> 0.704, paired rise 0.206 +- 0.075 (2.7 SE)",
            make_facts(_scan(0.497, 0.0, 0.0, 0.734), _scan(0.704, 0.206, 0.075, 0.734), steps=(24, 120),
                       log=_log([0.515, 0.497, 0.566, 0.70], 1.0)), True),
    Example("tiny zoo likelihood_displacement, scanned: the logged eval loss rose 19% (0.124 -> 0.147) but the "
            "paired rise is 0.022 +- 0.014 (1.5 SE): noise",
            make_facts(_scan(0.124, 0.0, 0.0, 0.906), _scan(0.147, 0.022, 0.014, 0.906), steps=(144, 192),
                       log=_log([0.418, 0.305, 0.124, 0.147], 1.0)), False),
)

RULE = Rule("DPO103", "overfitting", "overfitting", "warning", check, __doc__, EXAMPLES,
            reads=("rewards/accuracies", "margins_per_token", "heldout/dpo_loss", "heldout/dpo_loss_rise",
                   "heldout/dpo_loss_rise_se"), log_reads=("loss", "rewards/accuracies"),
            source="both")
