"""report.md of a compare report: the pick, the next run's settings, and the runs side by side, for a PR comment.

Every text from data goes through `md_parts.md()` (inert: no HTML, link, image, autolink or @mention).
"""

from __future__ import annotations

from dpo_doctor.report import ReportBundle
from dpo_doctor.report_model import CompareRun
from dpo_doctor.views.md_parts import LIMIT, VERDICT_LABEL, md


def _num(v) -> str:
    return "–" if v is None else (f"{v:.4g}" if isinstance(v, float) else md(v))


def _peak(run: CompareRun, key: str) -> str:
    rows = [(c.metrics.get(key), c.name) for c in run.checkpoints if c.metrics.get(key) is not None]
    if not rows:
        return "–"
    value, name = max(rows)
    return f"{_num(value)} ({md(name)})"


def render_compare_markdown(b: ReportBundle) -> str:
    r = b.doc
    best, rec, q = r.best, r.recommendation, r.quality
    signal = q.signal or "rewards/accuracies"
    lines = [f"## dpo-doctor compare: {md(r.name)}", ""]
    if best:
        lines += [f"**Ship {md(best.run)} / {md(best.checkpoint)}** (confidence: "
                  f"{md(best.confidence)}). {md(best.reason)}", ""]
    else:
        lines += ["No checkpoint to ship: nothing was learned.", ""]
    knobs = ", ".join(f"{k} **{_num(v)}**" for k, v in (("beta", rec.beta), ("learning rate", rec.learning_rate))
                      if v is not None)
    lines += [f"**Next run:** {knobs}. {md(rec.text)}", "",
              f"Quality signal: {md(q.label)}" + (f" ({md(q.source)})" if q.source else "")
              + f"; reference {md(r.reference.path)}; {r.data.n_pairs} held-out pairs.", ""]
    head = ["run", "beta (source)", "lr (source)", "verdict", f"peak {md(signal)}", "last acc", "last margin",
            "last KL", "last len ratio", "diagnoses"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for x in r.runs:
        last = x.checkpoints[-1].metrics if x.checkpoints else {}
        diags = ", ".join(f"{d.code} {d.name}" for d in x.diagnoses) or "none"
        cells = [md(x.name) + (" ⭐" if best and x.name == best.run else ""),
                 f"{_num(x.beta)} ({md(x.beta_source)})",
                 f"{_num(x.learning_rate)} ({md(x.lr_source)})",
                 VERDICT_LABEL.get(x.verdict, md(x.verdict)), _peak(x, signal),
                 _num(last.get("rewards/accuracies")), _num(last.get("rewards/margins")),
                 _num(last.get("gen/kl_mean")), _num(last.get("gen/length_ratio")), md(diags)]
        lines.append("| " + " | ".join(cells) + " |")
    if r.warnings:
        lines += ["", "Warnings:"] + [f"- {md(w)}" for w in r.warnings]
    lines += ["", "<sub>Each run's full report: " + ", ".join(f"{md(x.report)}/report.md" for x in r.runs)
              + "</sub>"]
    text = "\n".join(lines) + "\n"
    return text if len(text) <= LIMIT else text[:LIMIT] + "\n\n(truncated)\n"
