"""report.html: one self-contained file to attach to a training review.

plotly.js is embedded once; each figure is a `Plotly.newPlot` call on JSON. Offline, opens from file://, makes no
network request. Untrusted text (prompts, completions, run names, messages) is escaped everywhere: `esc()` for
HTML, and figure JSON has `<`, `>`, `&` written as \\u003c... so `</script>` in a prompt cannot close the tag.
Plotly hover text is set as plain `text` with `hovertemplate` placeholders and escaped too.
"""

from __future__ import annotations

import html
import json
import math

import plotly.graph_objects as go
import polars as pl

from dpo_doctor.views.bundle import ReportBundle

MAX_SCATTER = 2000  # points drawn in scatter plots (statistics are computed on all rows by the scan)
MAX_TEXT = 600  # characters of a pair/sample text shown in tables
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
SEVERITY_COLOR = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}

TRENDS = [  # (title, [(metric, label)], y-axis title)
    ("Margins and accuracy", [("rewards/margins", "margin (beta-scaled)"), ("rewards/accuracies", "accuracy"),
                              ("accuracy/ranking", "ranking accuracy")], ""),
    ("Log-prob drift vs reference (per token)", [("drift_per_token/chosen", "chosen"),
                                                 ("drift_per_token/rejected", "rejected")], "nats/token"),
    ("KL(pi || pi_ref) on the policy's samples", [("gen/kl_mean", "exact KL (mean)"), ("gen/kl_k1_mean", "k1"),
                                                  ("gen/kl_k3_mean", "k3")], "nats / completion"),
    ("Generated length vs reference", [("gen/length_ratio", "sampled"), ("gen/greedy_length_ratio", "greedy")],
     "ratio to reference"),
    ("Diversity", [("gen/ead_per_input", "EAD per input"), ("gen/ead_across_input", "EAD across inputs"),
                   ("gen/distinct_2", "distinct-2"), ("gen/self_bleu", "self-BLEU")], "0..1"),
    ("Token entropy and top-10 mass of the policy", [("gen/entropy_mean", "mean token entropy (nats)"),
                                                     ("gen/topk_mass", "top-10 probability mass")], ""),
    ("Length bias of margins", [("length/margin_spearman", "Spearman rho(margin, len diff)")], "rho"),
]
CURVES = [("loss", "loss"), ("rewards/margins", "rewards/margins"), ("rewards/accuracies", "rewards/accuracies"),
          ("rewards/chosen", "rewards/chosen"), ("rewards/rejected", "rewards/rejected"),
          ("logps/chosen", "logps/chosen"), ("logps/rejected", "logps/rejected")]


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def clip(text, n: int = MAX_TEXT) -> str:
    s = str(text)
    return s if len(s) <= n else s[:n] + " …"


def num(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else esc(v)


def script_json(obj) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' survive literally."""
    s = obj if isinstance(obj, str) else json.dumps(obj)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class Page:
    """Collects sections and figures; figures are rendered by one script at the end."""

    def __init__(self):
        self.parts: list[str] = []
        self.figures: list[tuple[str, str]] = []

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def figure(self, fig: go.Figure, height: int = 340) -> None:
        div = f"fig{len(self.figures)}"
        fig.update_layout(height=height, margin=dict(l=50, r=20, t=40, b=40), template="plotly_white",
                          legend=dict(orientation="h", y=-0.2))
        self.figures.append((div, fig.to_json()))
        self.add(f'<div class="plot" id="{div}"></div>')


# ---- sections ------------------------------------------------------------------------------------------------


def thresholds(report: dict) -> dict[str, float]:
    """Metric -> threshold cited by a diagnosis (drawn as a dashed line on its trend)."""
    out = {}
    for d in report["diagnoses"]:
        for metric, ev in d["evidence"].items():
            if isinstance(ev.get("threshold"), (int, float)):
                out.setdefault(metric, ev["threshold"])
    return out


def header(page: Page, b: ReportBundle) -> None:
    r = b.report
    run, data, ref = r["run"], r.get("data") or {}, r.get("reference") or {}
    verdict = r.get("verdict", "healthy")
    n_samples = b.samples.height if b.samples is not None else 0
    best = r.get("best_checkpoint")
    page.add(f'<header><h1>dpo-doctor: {esc(run["name"])}</h1>'
             f'<div class="verdict v-{esc(verdict)}">{esc(verdict.upper())}</div>'
             f'<p class="summary">{esc(r.get("summary") or "")}</p>')
    facts = [("run", run.get("path")), ("reference", f'{ref.get("path", "–")} ({ref.get("kind", "–")})'),
             ("beta", f'{run.get("beta")} ({run.get("beta_source")})'), ("loss", run.get("loss_type") or "unknown"),
             ("data", f'{data.get("path", "–")} · {data.get("format", "–")}'),
             ("pairs", data.get("n_pairs", 0)), ("samples", n_samples), ("checkpoints", len(r["checkpoints"])),
             ("best checkpoint", f'{best["name"]}: {best["reason"]}' if best else "none")]
    if r.get("log_only"):
        facts.append(("verdict source", "log-only: training curves, no checkpoint scored"))
    page.add('<table class="facts">' + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
             + "</table>")
    if r.get("warnings"):
        page.add('<ul class="warnings">' + "".join(f"<li>{esc(w)}</li>" for w in r["warnings"]) + "</ul>")
    page.add("</header>")


def cards(page: Page, r: dict) -> None:
    page.add('<section id="diagnoses"><h2>Diagnoses</h2>')
    if not r["diagnoses"]:
        page.add('<p class="healthy">No finding: every rule passed. This run looks healthy.</p>')
    for i, d in enumerate(r["diagnoses"]):
        rec = d["recommendation"]
        knobs = "".join(f"<span class='knob'>{esc(k)}: {esc(v)}</span>" for k, v in
                        [("beta", f'{rec["beta"]:.3g}' if rec.get("beta") else None), ("variant", rec.get("variant"))]
                        + [(k, num(v) if isinstance(v, float) else v) for k, v in (rec.get("params") or {}).items()]
                        if v is not None)
        rows = "".join(f"<tr><td><code>{esc(m)}</code></td><td>{num(e.get('value'))}</td>"
                       f"<td>{num(e.get('threshold'))}</td><td>{num(e.get('reference_value'))}</td></tr>"
                       for m, e in d["evidence"].items())
        page.add(f'<div class="card sev-{esc(d["severity"])}" id="diag-{esc(d["code"])}">'
                 f'<div class="card-head"><span class="sev">{esc(d["severity"].upper())}</span> '
                 f'<b>{esc(d["code"])}</b> {esc(d["name"])} <span class="kind">{esc(d["kind"])}</span>'
                 f'<span class="ck">{esc(d.get("checkpoint") or "run-wide")}</span></div>'
                 f'<p>{esc(d["message"])}</p>'
                 f'<table class="evidence"><tr><th>metric</th><th>value</th><th>threshold</th><th>reference</th></tr>'
                 f'{rows}</table><p class="fix"><b>Fix:</b> {esc(rec["text"])} {knobs}</p>'
                 f'<details><summary>About {esc(d["code"])} (rule explanation)</summary>'
                 f'<pre>{esc(d.get("explanation") or "")}</pre></details></div>')
    page.add("</section>")


def checkpoint_lines(fig: go.Figure, r: dict) -> None:
    for c in r["checkpoints"]:
        fig.add_vline(x=c["step"], line=dict(color="#bbb", dash="dot", width=1))


def curves(page: Page, b: ReportBundle) -> None:
    log = b.train_log
    if log is None or log.height == 0:
        return
    page.add('<section id="curves"><h2>Training curves</h2><p class="note">From trainer_state.json; dotted lines '
             'mark saved checkpoints.</p><div class="grid">')
    for key, title in CURVES:
        if key not in log.columns:
            continue
        fig = go.Figure()
        for split, color in (("train", COLORS[0]), ("eval", COLORS[1])):
            rows = log.filter((pl.col("split") == split) & pl.col(key).is_not_null()).sort("step")
            if rows.height:
                fig.add_scatter(x=rows["step"].to_list(), y=rows[key].to_list(), name=split, mode="lines+markers",
                                line=dict(color=color), marker=dict(size=4))
        if not fig.data:
            continue
        checkpoint_lines(fig, b.report)
        fig.update_layout(title=esc(title), xaxis_title="step")
        page.figure(fig, height=280)
    page.add("</div></section>")


def trends(page: Page, b: ReportBundle) -> None:
    r = b.report
    ckpts = r["checkpoints"]
    if not ckpts:
        return
    lines = thresholds(r)
    ref = (r.get("reference") or {}).get("metrics") or {}
    steps = [c["step"] for c in ckpts]
    page.add('<section id="trends"><h2>Per-checkpoint probes</h2><p class="note">Dashed: the threshold a diagnosis '
             'cites; dotted: the reference model\'s own value.</p><div class="grid">')
    for title, series, ytitle in TRENDS:
        present = [(k, lab) for k, lab in series if any(c["metrics"].get(k) is not None for c in ckpts)]
        if not present:
            continue
        fig = go.Figure()
        for i, (key, label) in enumerate(present):
            ys = [c["metrics"].get(key) for c in ckpts]
            color = COLORS[i % len(COLORS)]
            if key == "gen/kl_mean":
                lo = [c["metrics"].get("gen/kl_ci_low") for c in ckpts]
                hi = [c["metrics"].get("gen/kl_ci_high") for c in ckpts]
                if all(v is not None for v in lo + hi):
                    fig.add_scatter(x=steps + steps[::-1], y=hi + lo[::-1], fill="toself", line=dict(width=0), mode="lines",
                                    fillcolor="rgba(31,119,180,0.15)", name="95% CI", hoverinfo="skip")
            fig.add_scatter(x=steps, y=ys, name=esc(label), mode="lines+markers", line=dict(color=color),
                            text=[esc(c["name"]) for c in ckpts], hovertemplate="%{text}: %{y:.4g}<extra></extra>")
            if key in lines:
                fig.add_hline(y=lines[key], line=dict(color=color, dash="dash"),
                              annotation_text=esc(f"threshold {lines[key]:.3g}"))
            if ref.get(key) is not None and key.startswith("gen/") and "ratio" not in key and "kl" not in key:
                fig.add_hline(y=ref[key], line=dict(color=color, dash="dot", width=1))
        fig.update_layout(title=esc(title), xaxis_title="step", yaxis_title=esc(ytitle))
        page.figure(fig)
    page.add("</div></section>")


def distributions(page: Page, b: ReportBundle) -> None:
    if b.pairs is None or b.pairs.height == 0:
        return
    kept = b.pairs.filter(~pl.col("excluded"))
    page.add('<section id="distributions"><h2>Margin distributions</h2><div class="grid">')
    fig = go.Figure()
    for i, c in enumerate(b.report["checkpoints"]):
        m = kept.filter(pl.col("checkpoint") == c["name"])["margin"]
        fig.add_histogram(x=m.to_list(), name=esc(c["name"]), opacity=0.55, nbinsx=40,
                          marker_color=COLORS[i % len(COLORS)])
    fig.update_layout(barmode="overlay", title="Margin histogram per checkpoint", xaxis_title="margin (beta-scaled)")
    page.figure(fig)
    last = b.report["checkpoints"][-1]
    rows = kept.filter(pl.col("checkpoint") == last["name"]).with_columns(
        diff=(pl.col("len_chosen") - pl.col("len_rejected")).cast(pl.Float64))
    shown = rows.sample(n=MAX_SCATTER, seed=0) if rows.height > MAX_SCATTER else rows
    fig = go.Figure()
    fig.add_scatter(x=shown["diff"].to_list(), y=shown["margin"].to_list(), mode="markers", name="pairs",
                    text=[f"pair {i}" for i in shown["pair_id"].to_list()], marker=dict(size=5, opacity=0.6),
                    hovertemplate="%{text}: len diff %{x}, margin %{y:.3g}<extra></extra>")
    x, y = shown["diff"].to_list(), shown["margin"].to_list()
    if len(x) > 2 and max(x) > min(x):
        mx, my = sum(x) / len(x), sum(y) / len(y)
        slope = sum((a - mx) * (c - my) for a, c in zip(x, y)) / sum((a - mx) ** 2 for a in x)
        fig.add_scatter(x=[min(x), max(x)], y=[my + slope * (min(x) - mx), my + slope * (max(x) - mx)],
                        mode="lines", name="least-squares trend", line=dict(color="#d62728"))
    rho = last["metrics"].get("length/margin_spearman")
    fig.update_layout(title=esc(f"{last['name']}: margin vs len(chosen) - len(rejected), Spearman rho = {num(rho)}"),
                      xaxis_title="response length difference (tokens)", yaxis_title="margin")
    page.figure(fig)
    page.add("</div></section>")


def pair_table(title: str, rows: pl.DataFrame, texts: pl.DataFrame | None, value_col: str) -> str:
    if texts is not None:
        rows = rows.join(texts, on="pair_id", how="left")
    extra = value_col != "margin"
    body = []
    for row in rows.iter_rows(named=True):
        body.append(f"<tr><td>{row['pair_id']}</td>" + (f"<td>{num(row[value_col])}</td>" if extra else "")
                    + f"<td>{num(row['margin'])}</td>"
                    f"<td class='txt'>{esc(clip(row.get('prompt', '')))}</td>"
                    f"<td class='txt'>{esc(clip(row.get('chosen', '')))}</td>"
                    f"<td class='txt'>{esc(clip(row.get('rejected', '')))}</td></tr>")
    return (f"<h3>{esc(title)}</h3><table class='pairs'><tr><th>pair</th>"
            + (f"<th>{esc(value_col)}</th>" if extra else "") + "<th>margin</th>"
            f"<th>prompt</th><th>chosen</th><th>rejected</th></tr>{''.join(body)}</table>")


def worst_pairs(page: Page, b: ReportBundle, n: int = 12) -> None:
    if b.pairs is None or not b.report["checkpoints"]:
        return
    last = b.report["checkpoints"][-1]["name"]
    rows = b.pairs.filter((pl.col("checkpoint") == last) & ~pl.col("excluded")).with_columns(
        chosen_drift=pl.col("logp_chosen") - pl.col("ref_logp_chosen"))
    page.add(f'<section id="pairs"><h2>Worst pairs at {esc(last)}</h2>')
    page.add(pair_table("Most negative margins", rows.sort("margin").head(n), b.pair_texts, "margin"))
    page.add(pair_table("Largest chosen log-prob drops (nats vs reference)", rows.sort("chosen_drift").head(n),
                        b.pair_texts, "chosen_drift"))
    page.add("</section>")


def samples_viewer(page: Page, b: ReportBundle, n_prompts: int = 8) -> None:
    s = b.samples
    if s is None or s.height == 0:
        return
    names = ["reference"] + [c["name"] for c in b.report["checkpoints"]]
    page.add('<section id="samples"><h2>Samples: reference vs policy</h2><p class="note">Greedy completion per prompt '
             '(one sampled completion when there is no greedy row); expand a prompt for every checkpoint.</p>')
    for pid in sorted(set(s["prompt_id"].to_list()))[:n_prompts]:
        rows = s.filter(pl.col("prompt_id") == pid).sort(["greedy", "sample_idx"], descending=[True, False])
        prompt = rows["prompt"][0]
        first = {}
        for row in rows.iter_rows(named=True):
            first.setdefault(row["checkpoint"], row)
        cols = "".join(f"<div class='sample'><div class='who'>{esc(name)} · {first[name]['n_tokens']} tokens"
                       f"{' · KL ' + num(first[name]['kl']) if name != 'reference' else ''}</div>"
                       f"<pre>{esc(clip(first[name]['text']))}</pre></div>"
                       for name in (names[0], names[-1]) if name in first)
        rest = "".join(f"<div class='sample'><div class='who'>{esc(name)}</div><pre>{esc(clip(first[name]['text']))}"
                       f"</pre></div>" for name in names[1:-1] if name in first)
        page.add(f"<div class='prompt'><div class='ptext'><b>prompt {pid}</b>: {esc(clip(prompt, 400))}</div>"
                 f"<div class='pair2'>{cols}</div>"
                 + (f"<details><summary>all checkpoints</summary><div class='pair2'>{rest}</div></details>" if rest
                    else "") + "</div>")
    page.add("</section>")


def metrics_table(page: Page, r: dict) -> None:
    ckpts = r["checkpoints"]
    if not ckpts:
        return
    keys = sorted({k for c in ckpts for k in c["metrics"]})
    info = r.get("metric_info") or {}
    head = "".join(f"<th>{esc(c['name'])}</th>" for c in ckpts)
    body = "".join(f"<tr><td><code>{esc(k)}</code></td><td class='unit'>{esc((info.get(k) or {}).get('unit', ''))}</td>"
                   + "".join(f"<td>{num(c['metrics'].get(k))}</td>" for c in ckpts) + "</tr>" for k in keys)
    page.add(f'<section id="metrics"><details><summary><h2 style="display:inline">All metrics</h2></summary>'
             f'<table class="metrics"><tr><th>metric</th><th>unit</th>{head}</tr>{body}</table></details></section>')


CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;padding:16px;
color:#222}h1{margin:0 0 6px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
.verdict{display:inline-block;padding:3px 12px;border-radius:12px;color:#fff;font-weight:bold}
.v-healthy{background:#2e7d32}.v-warning{background:#ef6c00}.v-error{background:#c62828}
.facts th{text-align:left;padding-right:14px;color:#555;vertical-align:top}.facts td{word-break:break-all}
.warnings{color:#8a5a00}.card{border:1px solid #ddd;border-left:6px solid #999;border-radius:6px;padding:8px 14px;
margin:10px 0}.sev-error{border-left-color:#c62828}.sev-warning{border-left-color:#ef6c00}
.sev-info{border-left-color:#1565c0}.sev{font-weight:bold}.kind{background:#eee;border-radius:8px;padding:1px 8px;
margin-left:6px;font-size:90%}.ck{float:right;color:#666}.knob{background:#e3f2fd;border-radius:8px;padding:1px 8px;
margin-left:6px;font-size:90%}table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #eee;
font-size:13px}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:8px}
.txt{max-width:320px;white-space:pre-wrap;word-break:break-word}pre{white-space:pre-wrap;word-break:break-word;
margin:4px 0;font-size:12.5px}.pair2{display:grid;grid-template-columns:1fr 1fr;gap:10px}.sample{background:#fafafa;
border:1px solid #eee;border-radius:4px;padding:4px 8px}.who{color:#555;font-size:12px}.prompt{margin:12px 0}
.note{color:#666;font-size:13px}.healthy{color:#2e7d32;font-weight:bold}.unit{color:#777}
@media print{.plot{break-inside:avoid}details{display:block}body{max-width:none}}
"""


def render_html(b: ReportBundle) -> str:
    from plotly.offline import get_plotlyjs

    page = Page()
    header(page, b)
    cards(page, b.report)
    curves(page, b)
    trends(page, b)
    distributions(page, b)
    worst_pairs(page, b)
    samples_viewer(page, b)
    metrics_table(page, b.report)
    calls = "\n".join(f"F={script_json(spec)};Plotly.newPlot({json.dumps(div)},F.data,F.layout,"
                      "{displaylogo:false,responsive:true,displayModeBar:false});" for div, spec in page.figures)
    title = esc(f"dpo-doctor: {b.report['run']['name']}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>{''.join(page.parts)}"
            f"<footer class='note'>dpo-doctor {esc(b.report['tool']['version'])} · report schema "
            f"{esc(b.report['schema_version'])} · created {esc(b.report.get('created', ''))}</footer>"
            f"<script>var F;{calls}</script></body></html>")
