"""The sweep's verdict: its checkpoints on quality vs sqrt(KL), the frontier, the one to ship, the next beta / lr.

Pure functions of finished numbers (no model). Rafailov et al. 2024 (arXiv:2406.02900) measure direct alignment
runs the way reward-model over-optimization was measured: plotted against sqrt(KL(pi || pi_ref)), quality rises,
peaks, then falls as the policy moves on (the hump), and lower beta reaches the same KL sooner. So:

- x = sqrt(`gen/kl_mean`) (nats per sampled completion), y = the quality signal (judge win rate or task accuracy),
  else the held-out implicit-reward accuracy as a proxy, drawn as such;
- the frontier: the best quality reached within each KL budget (the upper-left staircase over every run's points
  and the reference at KL 0);
- the best checkpoint: with a quality signal, the highest mean per-prompt quality over ALL runs' checkpoints,
  chosen by a paired bootstrap over the same prompts (`metrics.paired_bootstrap`): "clear" when the 95% interval
  of its difference to the runner-up lies above 0, else "within noise", with each candidate's chance of being the
  best. Checkpoints from a run's first degenerate one on (DPO109) are left out while another exists. Without a
  signal: the hump heuristic over each run's own best checkpoint (`best_checkpoint`, which stays inside the KL
  budget): healthier runs first, then held-out accuracy, then less KL; confidence "low", said so;
- the next run: the beta (and learning rate) of the run where the frontier peaks; with three or more values of
  one of them, a quadratic in log(value) through each run's peak quality places the peak between the swept
  values when it is a maximum inside the range (said so, with the fit's inputs), else the edge is named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dpo_doctor.metrics.paired_bootstrap import paired_choice
from dpo_doctor.report_model import ScanReport

VERDICT_RANK = {"healthy": 0, "no-failure-found": 0, "warning": 1, "error": 2}


@dataclass(frozen=True)
class Point:
    """One checkpoint of one run, as the hump figure and the choice see it."""

    run: str
    checkpoint: str
    step: int
    kl: float | None  # gen/kl_mean, nats per completion
    quality: float | None  # the signal (None without one)
    quality_low: float | None
    quality_high: float | None
    accuracy: float | None  # rewards/accuracies (held-out implicit-reward accuracy)
    margin: float | None
    length_ratio: float | None
    degenerate: bool  # at or after the run's first degenerate checkpoint (DPO109)

    @property
    def sqrt_kl(self) -> float | None:
        return math.sqrt(max(self.kl, 0.0)) if self.kl is not None else None

    def y(self, signal: str | None) -> float | None:
        return self.quality if signal else self.accuracy


def _f(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None


def points_of(run: str, report: ScanReport, signal: str | None) -> list[Point]:
    """The run's trained checkpoints as points (from its scan's loaded report.json)."""
    first_loop = next((d.recommendation.params.get("first_degenerate_step")
                       for d in report.diagnoses if d.code == "DPO109"), None)
    out = []
    for c in report.checkpoints:
        m = c.metrics
        out.append(Point(run=run, checkpoint=c.name, step=c.step, kl=_f(m.get("gen/kl_mean")),
                         quality=_f(m.get(signal)) if signal else None,
                         quality_low=_f(m.get(f"{signal}_low")) if signal else None,
                         quality_high=_f(m.get(f"{signal}_high")) if signal else None,
                         accuracy=_f(m.get("rewards/accuracies")), margin=_f(m.get("rewards/margins")),
                         length_ratio=_f(m.get("gen/length_ratio")),
                         degenerate=first_loop is not None and c.step >= int(first_loop)))
    return out


def frontier(points: list[Point], signal: str | None, reference_y: float | None) -> list[dict]:
    """The best y reached within each sqrt(KL) budget: points in KL order that beat every point with less KL."""
    found = [p for p in points if p.sqrt_kl is not None and p.y(signal) is not None]
    best = reference_y if reference_y is not None else -math.inf
    out = [{"run": None, "checkpoint": "reference", "sqrt_kl": 0.0, "y": reference_y}] if reference_y is not None else []
    for p in sorted(found, key=lambda p: (p.sqrt_kl, -p.y(signal))):
        if p.y(signal) > best:
            best = p.y(signal)
            out.append({"run": p.run, "checkpoint": p.checkpoint, "sqrt_kl": p.sqrt_kl, "y": p.y(signal)})
    return out


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3g}"


def choose_by_quality(points: list[Point], scores: dict[tuple[str, str], np.ndarray], label: str,
                      reference_q: float | None, seed: int = 0) -> dict | None:
    """The best checkpoint over all runs by the paired bootstrap over prompts (module doc); None when no point has
    per-prompt scores."""
    usable = [p for p in points if (p.run, p.checkpoint) in scores and not p.degenerate]
    dropped = len([p for p in points if (p.run, p.checkpoint) in scores]) - len(usable)
    if not usable:
        usable, dropped = [p for p in points if (p.run, p.checkpoint) in scores], 0
    if not usable:
        return None
    usable.sort(key=lambda p: (p.kl if p.kl is not None else math.inf, p.step))  # exact ties: less KL wins
    widths = {len(scores[(p.run, p.checkpoint)]) for p in usable}
    if len(widths) != 1:
        return None  # not scored on the same prompts: cannot pair
    choice = paired_choice(np.stack([scores[(p.run, p.checkpoint)] for p in usable]), seed=seed)
    best = usable[choice.best]
    text = (f"highest {label} over {len(usable)} checkpoints of {len({p.run for p in usable})} runs: "
            f"{_fmt(choice.means[choice.best])} on {widths.pop()} prompts")
    if reference_q is not None:
        text += f" (the reference: {_fmt(reference_q)})"
    if choice.runner_up is not None:
        runner = usable[choice.runner_up]
        text += (f"; {choice.confidence} against the runner-up {runner.run}/{runner.checkpoint} "
                 f"({_fmt(choice.means[choice.runner_up])}): paired difference {_fmt(choice.diff)}, 95% interval "
                 f"{_fmt(choice.diff_low)} to {_fmt(choice.diff_high)} (bootstrap over the same prompts)")
    text += f"; chance of being the best {choice.p_best[choice.best]:.0%}"
    if len(choice.tied) > 1:
        text += f"; {len(choice.tied) - 1} other checkpoint(s) cannot be told apart from it"
    if dropped:
        text += f"; {dropped} looping checkpoint(s) left out (DPO109)"
    return {"run": best.run, "checkpoint": best.checkpoint, "step": best.step, "reason": text,
            "confidence": choice.confidence or "single candidate", "signal": None,
            "quality": choice.means[choice.best], "p_best": choice.p_best[choice.best],
            "diff_vs_runner_up": choice.diff, "diff_low": choice.diff_low, "diff_high": choice.diff_high,
            "tied": [f"{usable[i].run}/{usable[i].checkpoint}" for i in choice.tied if i != choice.best]}


def choose_by_hump(points: list[Point], runs: list[dict]) -> dict | None:
    """No quality signal: among each run's own best checkpoint (inside the KL budget), healthier runs first, then
    held-out accuracy, then less KL."""
    cands = []
    for r in runs:
        own = (r.get("best_checkpoint") or {}).get("name")
        p = next((p for p in points if p.run == r["name"] and p.checkpoint == own), None)
        if p is not None and p.accuracy is not None:
            cands.append((VERDICT_RANK.get(r.get("verdict"), 1), -p.accuracy, p.kl or 0.0, p, r))
    if not cands:
        return None
    cands.sort(key=lambda t: t[:3])
    _, _, _, best, run = cands[0]
    text = (f"no quality signal (pass a verifiable --probe-suite or --judge): picked by the hump heuristic, quality "
            f"peaks early in KL (Rafailov et al. 2024). Each run's own best checkpoint stays inside the KL budget; "
            f"among those of {len(cands)} runs, {best.run} ({run.get('verdict')}) has held-out accuracy "
            f"{_fmt(best.accuracy)} at KL {_fmt(best.kl)} nats. Implicit-reward accuracy does not track generation "
            f"quality, so this pick is a guess")
    return {"run": best.run, "checkpoint": best.checkpoint, "step": best.step, "reason": text, "confidence": "low",
            "signal": "rewards/accuracies"}


def _peak_fit(values: list[float], peaks: list[float]) -> float | None:
    """argmax of a quadratic in log(value) through (value, peak quality), when it is a maximum inside the range."""
    x, y = np.log(np.asarray(values)), np.asarray(peaks)
    if len(set(values)) < 3:
        return None
    c, b, _ = np.polyfit(x, y, 2)
    if c >= 0:
        return None
    vertex = -b / (2 * c)
    if not x.min() < vertex < x.max():
        return None
    return float(math.exp(vertex))


def _sig(v: float) -> float:
    return float(f"{v:.2g}")


def recommend(points: list[Point], runs: list[dict], best: dict | None, signal: str | None) -> dict:
    """The beta and learning rate for the next run, from where the frontier peaks (module doc)."""
    if best is None:
        return {"beta": None, "learning_rate": None, "text": "no checkpoint to recommend from (nothing learned)"}
    by_name = {r["name"]: r for r in runs}
    top = by_name[best["run"]]
    peak = {r["name"]: max((p.y(signal) for p in points if p.run == r["name"] and p.y(signal) is not None),
                           default=None) for r in runs}
    out = {"beta": top.get("beta"), "beta_source": top.get("beta_source"),
           "learning_rate": top.get("learning_rate"), "lr_source": top.get("lr_source"),
           "steps": best.get("step"), "from_run": best["run"]}
    notes = [f"the frontier peaks at {best['run']}/{best['checkpoint']} (beta {_fmt(top.get('beta'))} from "
             f"{top.get('beta_source')}, learning rate {_fmt(top.get('learning_rate'))} from {top.get('lr_source')})"]
    if signal is None:
        notes.append("no quality signal, so no fit across the sweep: the beta and learning rate of the heuristic "
                     "pick (low confidence; measure quality with --probe-suite or --judge)")
    for key, label in (("beta", "beta"), ("learning_rate", "learning rate")):
        rows = [(r[key], peak[r["name"]]) for r in runs if r.get(key) and peak[r["name"]] is not None]
        values = sorted({v for v, _ in rows})
        if len(values) < 2 or signal is None:
            continue
        if max(q for _, q in rows) - min(q for _, q in rows) < 1e-9:
            notes.append(f"every {label} swept peaks at the same quality: the sweep does not tell them apart")
            continue
        fit = _peak_fit([v for v, _ in rows], [q for _, q in rows])
        swept = ", ".join(f"{_fmt(v)}: {_fmt(q)}" for v, q in sorted(rows))
        if fit is not None:
            out[key] = _sig(fit)
            out[f"{key}_fit"] = fit
            notes.append(f"a quadratic in log({label}) through each run's peak quality ({swept}) peaks at "
                         f"{_fmt(fit)}, between the swept values")
        elif top.get(key) in (values[0], values[-1]):
            side = "lowest" if top.get(key) == values[0] else "highest"
            nxt = values[0] / 2 if side == "lowest" else values[-1] * 2
            notes.append(f"the best run has the {side} {label} swept ({swept}): the peak may lie beyond the sweep, "
                         f"try {label} {_fmt(nxt)} too")
    run_points = sorted((p for p in points if p.run == best["run"]), key=lambda p: p.step)
    if run_points and run_points[-1].checkpoint == best["checkpoint"] and len(run_points) > 1:
        notes.append("quality was still rising at the run's last checkpoint: train longer at this setting")
    elif best.get("step"):
        notes.append(f"stop near step {best['step']} (later checkpoints of that run moved further without doing "
                     "better)")
    out["text"] = "; ".join(notes)
    return out
