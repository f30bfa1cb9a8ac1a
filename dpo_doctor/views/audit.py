"""Views of a data audit (`dpo-doctor data`, report kind "data_audit"): HTML page, Markdown, terminal summary.

The same building blocks as a scan's views (diagnosis cards, escaping, the embedded Plotly, the Markdown escaper),
with a data section instead of checkpoints: the statistics, figures of the length ratio, the reference's per-token
preference and the CHES distribution, and the flagged pairs with their texts. Reads the `ReportBundle` only: no
model, no recomputed statistic (histograms are binned for display; every number shown is the audit's).
"""

from __future__ import annotations

import json
import math

import plotly.graph_objects as go
import polars as pl
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dpo_doctor.report import ReportBundle
from dpo_doctor.report_model import DataAuditReport
import dpo_doctor.views.html_parts as H
import dpo_doctor.views.md_parts as M
from dpo_doctor.views.figures import Plot, plain, style

N_ROWS = 8  # flagged pairs shown per table (all of them are in audit_pairs.parquet / filter_ids.jsonl)
MAX_POINTS = 2000  # points of the length scatter (every pair counts in the statistics)
# (title, per-pair column, sort column, descending, what the column means)
FLAGGED = (
    ("Contradictions", "contradiction", "pair_id", False, "the same two answers preferred the other way elsewhere"),
    ("Exact duplicates", "exact_duplicate", "pair_id", False, "a copy of an earlier pair (duplicate_of)"),
    ("Near duplicates", "near_duplicate", "pair_id", False, "a near copy of an earlier pair (MinHash)"),
    ("Minimal-edit pairs", "min_edit", "edit_distance", False, "chosen and rejected a few tokens apart"),
    ("Displacement risk (highest CHES)", "displacement_risk", "ches_norm", True,
     "length-normalized CHES > 0 on the reference"),
    ("Reference disfavours (review)", "ref_disfavours", "ref_margin_per_token", False,
     "the reference finds the chosen answer > 1 nat/token less likely"),
    ("Canned chosen answers", "chosen_cluster_prompts", "chosen_cluster_prompts", True,
     "the chosen answer is shared with other prompts (count of prompts)"),
    ("Over max_length", "over_max_length", "full_len", True, "prompt + longer answer over max_length"),
    ("Empty answers", "empty_answer", "pair_id", False, "an empty or whitespace answer"),
)


def _title(r: DataAuditReport) -> str:
    return "data audit: " + str(r.data.path or "?").replace("\\", "/").rsplit("/", 1)[-1]


# ---- figures -----------------------------------------------------------------------------------------------


def _histogram(values: list[float], title: str, x_title: str, pid: str, metrics: tuple[str, ...],
               vline: float | None = None) -> Plot:
    fig = go.Figure(go.Histogram(x=values, nbinsx=40, marker_color="#1f77b4", name=plain(x_title)))
    if vline is not None:
        fig.add_vline(x=vline, line=dict(color="#c62828", dash="dash", width=1))
    fig.update_xaxes(title_text=plain(x_title))
    fig.update_yaxes(title_text="pairs")
    return Plot(pid, title, style(fig, title), metrics)


def audit_plots(b: ReportBundle) -> list[Plot]:
    """Length ratio histogram and length scatter; with --ref the per-token preference and CHES distributions."""
    p = b.audit_pairs
    if p is None or p.height == 0:
        return []
    unit = b.doc.audit.length_unit if b.doc.audit else "tokens"
    plots = [_histogram([math.log2(v) for v in p["length_ratio"].to_list() if v and v > 0],
                        f"Length ratio chosen / rejected (log2; right of 0: chosen longer)", "log2(len chosen / len "
                        "rejected)", "audit-length-ratio", ("length/median_ratio", "length/longer_wins_accuracy"),
                        0.0)]
    shown = p.head(MAX_POINTS)
    fig = go.Figure(go.Scatter(x=shown["len_rejected"].to_list(), y=shown["len_chosen"].to_list(), mode="markers",
                                 marker=dict(size=4, opacity=0.5), name="pairs"))
    top = max(1, int(max(shown["len_chosen"].max() or 1, shown["len_rejected"].max() or 1)))
    fig.add_scatter(x=[0, top], y=[0, top], mode="lines", line=dict(color="#9e9e9e", dash="dot"), name="equal")
    fig.update_xaxes(title_text=plain(f"rejected length ({unit})"))
    fig.update_yaxes(title_text=plain(f"chosen length ({unit})"))
    plots.append(Plot("audit-length-scatter", "Chosen vs rejected length", style(fig, "Chosen vs rejected length"),
                      ("length/chosen_longer_frac",)))
    if "ches_norm" in p.columns:
        kept = p.filter(pl.col("ches_norm").is_not_null() & ~pl.col("identical"))
        plots.append(_histogram(kept["ches_norm"].to_list(), "CHES of chosen vs rejected (length-normalized; "
                                "> 0: displacement predicted)", "CHES_norm", "audit-ches",
                                ("ches/risk_frac", "ches/norm_median"), 0.0))
        plots.append(_histogram(kept["ref_margin_per_token"].to_list(), "Reference preference per token (chosen - "
                                "rejected; < -1: strongly disfavoured)", "nats / token", "audit-ref-margin",
                                ("ref/disfavoured_frac", "ref/prefers_chosen_frac"), -1.0))
    return plots


# ---- HTML --------------------------------------------------------------------------------------------------


def _filter(r: DataAuditReport):
    return r.audit.filter if r.audit else None


def facts(b: ReportBundle) -> list[tuple[str, str]]:
    r = b.doc
    data, ref, settings, filt = r.data, r.reference, r.settings or {}, _filter(r)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted((filt.by_reason if filt else {}).items())) or "none"
    return [("data", f"{data.path or '–'} · {data.format or '–'}"),
            ("pairs", f"{data.n_pairs} of {data.n_source_rows if data.n_source_rows is not None else '?'} rows · "
                      f"{data.n_excluded} with chosen == rejected · {data.n_dropped_too_long} dropped by max_length "
                      f"{data.max_length}"),
            ("lengths", f"{settings.get('length_unit', '?')}" + (f" ({settings.get('tokenizer')})"
                                                                 if settings.get("tokenizer") else "")),
            ("reference", f"{ref.path} ({ref.kind})" if ref else "none (no --ref: no CHES, no "
                                                             "reference preference)"),
            ("filter_ids.jsonl", f"{filt.n_pairs if filt else 0} pairs with a reason to drop: {reasons}")]


def stats_table(r: DataAuditReport) -> str:
    esc, num, info = H.esc, H.num, r.metric_info
    rows = "".join(f"<tr><td><code>{esc(k)}</code></td><td class='n'>{num(v)}</td>"
                   f"<td class='unit'>{esc(info[k].unit if k in info else '')}</td>"
                   f"<td>{esc(info[k].description if k in info else '')}</td></tr>" for k, v in r.data.stats.items())
    return (f'<section id="metrics"><h2>Data statistics</h2><div class="scroll"><table class="metrics"><tr><th>'
            f'statistic</th><th>value</th><th>unit</th><th>what it measures</th></tr>{rows}</table></div></section>')


def flagged_section(b: ReportBundle) -> str:
    clip, esc, num = H.clip, H.esc, H.num
    p = b.audit_pairs
    if p is None or p.height == 0:
        return ""
    if b.pair_texts is not None:
        p = p.join(b.pair_texts, on="pair_id", how="left")
    canned = {int(x["pair_id"]) for x in _filter_rows(b) if "canned_chosen" in x["reasons"]}
    parts = []
    for title, col, sort, desc, what in FLAGGED:
        if col not in p.columns:
            continue
        rows = p.filter(pl.col("pair_id").is_in(list(canned))) if col == "chosen_cluster_prompts" else \
            p.filter(pl.col(col).fill_null(False))
        if rows.height == 0:
            continue
        rows = rows.sort(sort, descending=desc, nulls_last=True).head(N_ROWS)
        extra = [c for c in ("edit_distance", "duplicate_of", "ches_norm", "ref_margin_per_token", "full_len",
                             "chosen_cluster_prompts") if c in rows.columns and c in (sort, "duplicate_of")]
        head = "<th>pair</th><th>len c / r</th>" + "".join(f"<th>{esc(c)}</th>" for c in extra)
        head += "<th>prompt</th><th>chosen</th><th>rejected</th>" if "prompt" in rows.columns else ""
        body = []
        for row in rows.iter_rows(named=True):
            cells = (f"<td>{esc(row['pair_id'])}</td><td class='n'>{esc(row['len_chosen'])} / "
                     f"{esc(row['len_rejected'])}</td>" + "".join(f"<td class='n'>{num(row.get(c))}</td>" for c in extra))
            if "prompt" in rows.columns:
                cells += "".join(f"<td><div class='txt'>{esc(clip(row.get(k)))}</div></td>"
                                 for k in ("prompt", "chosen", "rejected"))
            body.append(f"<tr>{cells}</tr>")
        parts.append(f"<h3>{esc(title)} <span class='note'>({esc(what)})</span></h3><div class='scroll'><table "
                     f"class='pairs'><tr>{head}</tr>{''.join(body)}</table></div>")
    if not parts:
        return '<section id="pairs"><h2>Flagged pairs</h2><p class="note">No pair is flagged.</p></section>'
    return ('<section id="pairs"><h2>Flagged pairs</h2><p class="note">The first few of each kind; every pair and '
            'flag is in audit_pairs.parquet, the ids to drop in filter_ids.jsonl.</p>' + "".join(parts) + "</section>")


def _filter_rows(b: ReportBundle) -> list[dict]:
    """filter_ids.jsonl next to report.json (written by the audit; absent: nothing listed)."""
    path = b.path / "filter_ids.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("reasons"), list) and "pair_id" in row:
            out.append(row)
    return out


def render_audit_html(b: ReportBundle) -> str:
    from plotly.offline import get_plotlyjs

    import plotly.io as pio

    esc, r = H.esc, b.doc
    verdict = r.verdict
    plots = audit_plots(b)
    links = {m: f"fig-{p.id}" for p in plots for m in p.metrics}
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts(b))
    warnings = "".join(f"<li>{esc(w)}</li>" for w in r.warnings)
    found = sorted(enumerate(r.diagnoses), key=lambda t: ({"error": 0, "warning": 1}.get(t[1].severity, 2), t[0]))
    cards = "".join(H.card(i, d, links) for i, d in found) or \
        '<p class="healthy">No finding: every data rule passed.</p>'
    divs = "".join(f'<div class="plot" id="fig-{p.id}"></div>' for p in plots)
    body = (f'<header><div class="title"><h1>dpo-doctor {esc(_title(r))}</h1><span class="verdict v-{esc(verdict)}">'
            f'{esc(verdict.upper())}</span></div><p class="summary">{esc(r.summary or "")}</p>'
            f'<table class="facts">{rows}</table>' + (f'<ul class="warnings">{warnings}</ul>' if warnings else "")
            + f'</header><section id="diagnoses"><h2>Diagnoses</h2>{cards}</section>'
            f'<section id="distributions"><h2>Data figures</h2><p class="note">Histograms are binned for display; the '
            f'statistics are the audit\'s, over every pair.</p><div class="grid">{divs}</div></section>'
            + flagged_section(b) + stats_table(r))
    nav = "".join(f'<a href="#{s}">{t}</a>' for s, t in (("diagnoses", "Diagnoses"), ("distributions", "Figures"),
                                                        ("pairs", "Flagged pairs"), ("metrics", "Statistics")))
    template = H.script_json(json.dumps(pio.templates["plotly_white"].to_plotly_json(), separators=(",", ":")))
    calls = "\n".join(f"F={H.figure_json(p)};F.layout.template=T;Plotly.newPlot({json.dumps('fig-' + p.id)},F.data,"
                      "F.layout,CFG);" for p in plots)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc('dpo-doctor ' + _title(r) + ' (' + verdict + ')')}</title><style>{H.CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body><nav>{nav}</nav>{body}"
            f"<footer class='note'>dpo-doctor {esc(r.tool.version)} · report schema "
            f"{esc(r.schema_version)} · created {esc(r.created)} · rendered from report.json and its "
            f"Parquet tables</footer><script>var F,T={template};{H.PAGE_JS}{calls}</script></body></html>")


# ---- Markdown ----------------------------------------------------------------------------------------------


def render_audit_markdown(b: ReportBundle) -> str:
    md, num, r = M.md, M.num, b.doc
    verdict = r.verdict
    lines = [f"## dpo-doctor {md(_title(r))} — **{M.VERDICT_LABEL.get(verdict, md(verdict.upper()))}**", "",
             md(r.summary or ""), ""]
    lines += [f"- {md(k)}: {md(v)}" for k, v in facts(b)] + ["", "### Diagnoses", ""]
    if r.diagnoses:
        lines += M.diagnoses_table(r.diagnoses, "") + M.recommendations(r.diagnoses)
    else:
        lines += ["No finding: every data rule passed.", ""]
    lines += ["### Data statistics", "", "| statistic | value |", "|---|---:|"]
    lines += [f"| {md(k)} | {num(v)} |" for k, v in r.data.stats.items()] + [""]
    if r.warnings:
        lines += ["**Warnings**", ""] + [f"- {md(w)}" for w in r.warnings] + [""]
    lines.append(f"<sub>dpo-doctor {md(r.tool.version)}, report schema "
                 f"{num(r.schema_version)}; figures and flagged pairs: report.html</sub>")
    text = "\n".join(lines) + "\n"
    return text if len(text) <= M.LIMIT else text[: M.LIMIT - 200].rsplit("\n", 1)[0] + "\n\n… (truncated)\n"


# ---- terminal ----------------------------------------------------------------------------------------------

SUMMARY_KEYS = {"length/longer_wins_accuracy": "longer wins", "length/median_ratio": "len ratio",
                "data/duplicate_frac": "duplicates", "data/contradiction_frac": "contradictions",
                "data/min_edit_frac": "min-edit", "data/chosen_top_prompt_share": "canned",
                "data/over_max_length_frac": "over max_len", "ches/risk_frac": "CHES risk",
                "ref/disfavoured_frac": "ref disfavours"}


def print_audit_summary(b: ReportBundle, console: Console) -> None:
    r = b.doc
    stats = r.data.stats
    keys = [k for k in SUMMARY_KEYS if stats.get(k) is not None]
    table = Table(title=f"dpo-doctor {_title(r)} ({r.data.n_pairs} pairs)")
    for k in keys:
        table.add_column(SUMMARY_KEYS[k], justify="right")
    table.add_row(*[f"{stats[k]:.3g}" for k in keys])
    console.print(table)
    for w in r.warnings:
        console.print(Text(f"warning: {w}", style="yellow"))
    for d in r.diagnoses:
        style_ = {"error": "bold red", "warning": "yellow", "info": "cyan"}[d.severity]
        console.print(Text(f"{d.severity.upper():7} {d.code} {d.kind}: {d.message}", style=style_))
        console.print(Text(f"        fix: {d.recommendation.text}"))
    if not r.diagnoses:
        console.print(Text("verdict: healthy, no risk found in the data", style="green"))
    filt = _filter(r)
    console.print(Text(f"filter:  {b.path / 'filter_ids.jsonl'} ({filt.n_pairs if filt else 0} pairs with a reason)"))
    console.print(Text(f"report: {b.path / 'report.json'}"))
    if (b.path / "report.html").exists():
        console.print(Text(f"html:   {b.path / 'report.html'}"))
