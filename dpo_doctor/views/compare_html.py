"""The HTML page of a compare report (`dpo-doctor compare`): the hump, the side-by-side table, each run's findings.

Self-contained like the scan report (plotly.js inline, one shared template, figures drawn on load) and escaped the
same way: `esc()` for HTML, `plain()` inside Plotly strings, `script_json()` over the figure JSON. Read-only over
the ReportBundle: nothing is recomputed (the frontier, the best and the recommendation are the report's).
"""

from __future__ import annotations

import json
import re

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.subplots import make_subplots

from dpo_doctor.report import ReportBundle
from dpo_doctor.views.figures import COLORS, Plot, plain, style
from dpo_doctor.report_model import CompareReport, CompareRun
from dpo_doctor.views.html_parts import CSS, PAGE_JS, SEVERITY_ORDER, esc, figure_json, num, script_json


def _y_title(r: CompareReport) -> str:
    return r.quality.label


def hump_plot(b: ReportBundle) -> Plot | None:
    """Quality vs sqrt(KL): one line per run (checkpoints in step order), the frontier, the reference and the best."""
    r, pts = b.doc, b.points
    if pts is None or pts.is_empty():
        return None
    signal = r.quality.signal
    ycol = "quality" if signal else "accuracy"
    fig = go.Figure()
    for i, run in enumerate(x.name for x in r.runs):
        rows = pts.filter((pl.col("run") == run) & pl.col("sqrt_kl").is_not_null() & pl.col(ycol).is_not_null())
        rows = rows.sort("step")
        if rows.is_empty():
            continue
        err = None
        if signal and rows["quality_high"].null_count() == 0 and rows["quality_low"].null_count() == 0:
            err = dict(type="data", symmetric=False, array=(rows["quality_high"] - rows["quality"]).to_list(),
                       arrayminus=(rows["quality"] - rows["quality_low"]).to_list(), thickness=1, width=3)
        beta = next((x.beta for x in r.runs if x.name == run), None)
        fig.add_trace(go.Scatter(
            x=rows["sqrt_kl"].to_list(), y=rows[ycol].to_list(), mode="lines+markers", error_y=err,
            name=plain(f"{run} (beta {num(beta)})"), line=dict(color=COLORS[i % len(COLORS)]),
            text=[plain(f"{run}/{c}") for c in rows["checkpoint"].to_list()],
            hovertemplate="%{text}<br>sqrt(KL) %{x:.3g}<br>quality %{y:.3g}<extra></extra>"))
    front = [f for f in r.frontier if f.y is not None]
    if front:
        fig.add_trace(go.Scatter(x=[f.sqrt_kl for f in front], y=[f.y for f in front], mode="lines",
                                 line=dict(shape="hv", dash="dash", color="#555"), name="frontier (best within KL)",
                                 hoverinfo="skip"))
    ref_y = r.quality.reference
    if ref_y is not None:
        fig.add_trace(go.Scatter(x=[0.0], y=[ref_y], mode="markers", marker=dict(symbol="diamond", size=10,
                                 color="#000"), name="reference", hovertemplate="reference %{y:.3g}<extra></extra>"))
    best = r.best
    if best:
        row = pts.filter((pl.col("run") == best.run) & (pl.col("checkpoint") == best.checkpoint))
        if row.height and row["sqrt_kl"][0] is not None and row[ycol][0] is not None:
            fig.add_trace(go.Scatter(x=[row["sqrt_kl"][0]], y=[row[ycol][0]], mode="markers",
                                     marker=dict(symbol="star", size=16, color="#d4a017", line=dict(width=1)),
                                     name=plain(f"best: {best.run}/{best.checkpoint}"), hoverinfo="skip"))
    style(fig, "Quality vs sqrt(KL): the hump (one line per run, checkpoints in step order)", height=420)
    fig.update_layout(hovermode="closest", xaxis_title="sqrt(KL(pi || pi_ref)), sqrt(nats per completion)",
                      yaxis_title=plain(_y_title(r)))
    return Plot("hump", "hump", fig, ("gen/kl_mean",))


def per_run_plot(b: ReportBundle) -> Plot | None:
    """Held-out accuracy, margin and sampled length ratio vs step, one line per run."""
    r = b.doc
    panels = (("rewards/accuracies", "held-out accuracy"), ("rewards/margins", "mean margin"),
              ("gen/length_ratio", "length ratio vs ref"))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in panels])
    drawn = False
    for i, run in enumerate(r.runs):
        for j, (key, title) in enumerate(panels, start=1):
            xs = [c.step for c in run.checkpoints if c.metrics.get(key) is not None]
            ys = [c.metrics[key] for c in run.checkpoints if c.metrics.get(key) is not None]
            if not xs:
                continue
            drawn = True
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=plain(run.name),
                                     legendgroup=plain(run.name), showlegend=j == 1,
                                     line=dict(color=COLORS[i % len(COLORS)])), row=1, col=j)
    if not drawn:
        return None
    style(fig, "Margins, accuracy and length per run (x: step)", height=360)
    fig.update_layout(margin=dict(l=55, r=20, t=80, b=40))
    return Plot("per-run", "per run", fig, ("rewards/accuracies", "rewards/margins", "gen/length_ratio"))


def train_plot(b: ReportBundle) -> Plot | None:
    """Every run's logged training loss vs step (train split), when the runs logged one."""
    log = b.train_log
    if log is None or "loss" not in log.columns or "run" not in log.columns:
        return None
    if "split" in log.columns:
        log = log.filter(pl.col("split") == "train")
    log = log.filter(pl.col("loss").is_not_null())
    if log.is_empty():
        return None
    fig = go.Figure()
    for i, run in enumerate(x.name for x in b.doc.runs):
        rows = log.filter(pl.col("run") == run).sort("step")
        if rows.height:
            fig.add_trace(go.Scatter(x=rows["step"].to_list(), y=rows["loss"].to_list(), mode="lines",
                                     name=plain(run), line=dict(color=COLORS[i % len(COLORS)])))
    style(fig, "Training loss per run (from each run's log)", height=320)
    fig.update_layout(xaxis_title="step", yaxis_title="loss")
    return Plot("train-loss", "training loss", fig, ("loss",))


def compare_plots(b: ReportBundle) -> list[Plot]:
    return [p for p in (hump_plot(b), per_run_plot(b), train_plot(b)) if p is not None]


# ---- tables ------------------------------------------------------------------------------------------------


def _peak(run: CompareRun, key: str | None) -> tuple[str | None, float | None]:
    rows = [(c.name, c.metrics.get(key)) for c in run.checkpoints if key and c.metrics.get(key) is not None]
    return max(rows, key=lambda t: t[1]) if rows else (None, None)


SAFE_LINK = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def run_link(run: CompareRun) -> str:
    """A link to the run's own report.html when `report` is a plain relative path inside the folder (a tampered
    report cannot make it a javascript: or outside URL); else the name as text."""
    rel = run.report
    if SAFE_LINK.fullmatch(rel) and ".." not in rel.split("/"):
        return f"<a href='{esc(rel)}/report.html'>{esc(run.name)}</a>"
    return esc(run.name)


def runs_table(r: CompareReport) -> str:
    """Side by side: one column per run."""
    signal = r.quality.signal or "rewards/accuracies"
    runs = r.runs
    best_run = r.best.run if r.best else None

    def last(run, key):
        vals = [c.metrics.get(key) for c in run.checkpoints]
        return vals[-1] if vals else None

    rows = [
        ("report", [run_link(x) for x in runs]),
        ("beta", [f"{num(x.beta)} <span class='unit'>({esc(x.beta_source)})</span>" for x in runs]),
        ("learning rate", [f"{num(x.learning_rate)} <span class='unit'>({esc(x.lr_source)})</span>"
                           for x in runs]),
        ("loss", [esc(x.loss_type or "?") for x in runs]),
        ("training log", [esc(x.train_log or "none") for x in runs]),
        ("verdict", [f"<span class='verdict v-{esc(x.verdict)}'>{esc(x.verdict.upper())}</span>" for x in runs]),
        ("diagnoses", [esc(", ".join(f"{d.code} {d.name}" for d in x.diagnoses) or "none") for x in runs]),
        ("checkpoints", [esc(len(x.checkpoints)) for x in runs]),
        (f"peak {signal}", [f"{num(_peak(x, signal)[1])} <span class='unit'>{esc(_peak(x, signal)[0] or '')}</span>"
                            for x in runs]),
        ("run's own best", [esc(x.best_checkpoint.name if x.best_checkpoint else "none") for x in runs]),
        ("last: held-out acc", [num(last(x, "rewards/accuracies")) for x in runs]),
        ("last: margin", [num(last(x, "rewards/margins")) for x in runs]),
        ("last: KL (nats)", [num(last(x, "gen/kl_mean")) for x in runs]),
        ("last: length ratio", [num(last(x, "gen/length_ratio")) for x in runs]),
    ]
    head = "".join(f"<th class='{'best-col' if x.name == best_run else ''}'>{esc(x.name)}</th>"
                   for x in runs)
    body = "".join(f"<tr><th>{esc(k)}</th>" + "".join(f"<td>{v}</td>" for v in vals) + "</tr>" for k, vals in rows)
    return (f'<section id="runs"><h2>Runs side by side</h2><div class="scroll"><table class="metrics"><tr><th></th>'
            f'{head}</tr>{body}</table></div></section>')


def points_table(b: ReportBundle) -> str:
    pts = b.points
    if pts is None or pts.is_empty():
        return ""
    best = (b.doc.best.run, b.doc.best.checkpoint) if b.doc.best else (None, None)
    body = []
    for p in pts.iter_rows(named=True):
        mark = " class='best-row'" if (p["run"], p["checkpoint"]) == best else ""
        body.append(f"<tr{mark}><td>{esc(p['run'])}</td><td>{esc(p['checkpoint'])}</td><td class='n'>{esc(p['step'])}"
                    f"</td>" + "".join(f"<td class='n'>{num(p[k])}</td>" for k in
                                       ("quality", "quality_low", "quality_high", "kl", "sqrt_kl", "accuracy",
                                        "margin", "length_ratio"))
                    + f"<td>{'loops' if p['degenerate'] else ''}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("run", "checkpoint", "step", "quality", "low", "high", "KL", "sqrt KL",
                                             "held-out acc", "margin", "length ratio", ""))
    return (f'<section id="points"><h2>Every checkpoint</h2><div class="scroll"><table class="metrics"><tr>{head}'
            f'</tr>{"".join(body)}</table></div></section>')


def diagnoses_section(r: CompareReport) -> str:
    parts = []
    for run in r.runs:
        found = sorted(run.diagnoses, key=lambda d: SEVERITY_ORDER.get(d.severity, 9))
        items = "".join(f"<li><b class='sev-{esc(d.severity)}'>{esc(d.severity.upper())}</b> "
                        f"<b>{esc(d.code)}</b> {esc(d.name)} <span class='ck'>{esc(d.checkpoint or 'run-wide')}"
                        f"</span><br>{esc(d.message)}<br><i>What to change:</i> "
                        f"{esc(d.recommendation.text)}</li>" for d in found)
        parts.append(f"<h3>{esc(run.name)}: {esc(run.verdict)}</h3>"
                     + (f"<ul class='diag'>{items}</ul>" if items else "<p class='healthy'>No finding.</p>"))
    return f'<section id="diagnoses"><h2>Diagnoses per run</h2>{"".join(parts)}</section>'


def header(r: CompareReport) -> str:
    best, rec, q = r.best, r.recommendation, r.quality
    facts = [("reference", r.reference.path),
             ("data", f"{r.data.path or '–'} ({r.data.n_pairs} pairs)"),
             ("quality signal", f"{q.label}" + (f" ({q.source})" if q.source else "")),
             ("runs", ", ".join(x.name for x in r.runs))]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    pick = (f"<p class='best'><b>Ship {esc(best.run)} / {esc(best.checkpoint)}</b> "
            f"<span class='kind'>confidence: {esc(best.confidence or '?')}</span><br>{esc(best.reason)}</p>"
            if best else "<p class='best'>No checkpoint to ship: nothing was learned.</p>")
    knobs = "".join(f"<span class='knob'>{esc(k)} = {num(v)}</span>"
                    for k, v in (("beta", rec.beta), ("learning rate", rec.learning_rate), ("steps", rec.steps))
                    if v is not None)
    nxt = f"<div class='fix'><b>Next run:</b> {esc(rec.text)}<div>{knobs}</div></div>"
    warnings = "".join(f"<li>{esc(w)}</li>" for w in r.warnings)
    return (f"<header><div class='title'><h1>dpo-doctor compare: {esc(r.name)}</h1></div>{pick}{nxt}"
            f"<table class='facts'>{rows}</table>" + (f"<ul class='warnings'>{warnings}</ul>" if warnings else "")
            + "</header>")


EXTRA_CSS = (".best{font-size:15px;margin:10px 0}.best-col{background:#fff4c2}.best-row td{background:#fff4c2}"
             ".diag li{margin:6px 0}")
NOTE = ("Rafailov et al. 2024 (arXiv:2406.02900): against sqrt(KL) quality rises, peaks and falls as the policy "
        "moves away from the reference. Bars: 95% intervals; dashed: the frontier, the best quality reached within "
        "each KL budget; diamond: the reference; star: the checkpoint to ship.")


def render_compare_html(b: ReportBundle) -> str:
    from plotly.offline import get_plotlyjs

    r = b.doc
    plots = compare_plots(b)
    divs = "".join(f'<div class="plot" id="fig-{p.id}"></div>' for p in plots)
    figs = (f'<section id="hump"><h2>The hump</h2><p class="note">{esc(NOTE)}</p><div class="grid">{divs}</div>'
            "</section>")
    body = [header(r), figs, runs_table(r), points_table(b), diagnoses_section(r)]
    template = script_json(json.dumps(pio.templates["plotly_white"].to_plotly_json(), separators=(",", ":")))
    calls = "\n".join(f"F={figure_json(p)};F.layout.template=T;Plotly.newPlot({json.dumps('fig-' + p.id)},F.data,"
                      "F.layout,CFG);" for p in plots)
    nav = "".join(f'<a href="#{s}">{t}</a>' for s, t in (("hump", "The hump"), ("runs", "Runs"),
                                                          ("points", "Checkpoints"), ("diagnoses", "Diagnoses")))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc('dpo-doctor compare: ' + r.name)}</title><style>{CSS}{EXTRA_CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body><nav>{nav}</nav>{''.join(body)}"
            f"<footer class='note'>dpo-doctor {esc(r.tool.version)} · report schema "
            f"{esc(r.schema_version)} · created {esc(r.created)} · rendered from report.json and "
            f"points.parquet; each run's own report is linked above</footer>"
            f"<script>var F,T={template};{PAGE_JS}{calls}</script></body></html>")
