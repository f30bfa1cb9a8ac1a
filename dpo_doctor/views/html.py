"""report.html: one self-contained file to attach to a training review (offline, printable, no network request).

plotly.js is embedded once; each figure is a `Plotly.newPlot` call on JSON, and the shared Plotly template is
emitted once instead of once per figure. Untrusted text (prompts, completions, run names, paths, messages) is
escaped everywhere it lands: `esc()` in HTML, `figures.plain()` inside Plotly strings, and `script_json()` over
the whole figure JSON so no `<`, `>` or `&` appears literally inside a <script> (a `</script>` in a prompt cannot
close the tag). Our own script only toggles visibility; it never builds markup from data.
"""

from __future__ import annotations

import html
import json
import math
import re

import plotly.io as pio

from dpo_doctor.views.figures import Plot, all_plots
from dpo_doctor.report import ReportBundle

MAX_TEXT = 500  # characters of a pair/sample text shown in a table cell (the full text stays in the parquet)
N_WORST = 10  # rows per worst-pairs table
N_PROMPTS = 12  # prompts in the samples viewer
N_EXTRA_SAMPLES = 4  # further samples per (prompt, checkpoint) behind a <details>
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
SECTION_TITLES = {"diagnoses": "Diagnoses", "curves": "Training curves", "trends": "Per-checkpoint probes",
                  "distributions": "Distributions", "pairs": "Worst pairs", "samples": "Samples",
                  "metrics": "All metrics"}


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def num(v) -> str:
    """A metric value for a table cell: 4 significant digits, en dash when missing."""
    if v is None or isinstance(v, bool) or (isinstance(v, float) and not math.isfinite(v)):
        return "–" if v is None or not isinstance(v, bool) else esc(v)
    return f"{v:.4g}" if isinstance(v, float) else esc(v)


def clip(text, n: int = MAX_TEXT) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= n else s[:n] + f" … [{len(s) - n} more characters]"


def slug(text) -> str:
    """An id-safe token (letters, digits, dash) for anchors built from codes."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", str(text)).strip("-") or "x"


def script_json(obj) -> str:
    """JSON that is inert inside <script>: no '<', '>' or '&' survives literally (also covers U+2028/9)."""
    s = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(a, b)
    return s


def figure_json(plot: Plot) -> str:
    """A figure's JSON without its template (the page sets one shared template)."""
    spec = json.loads(plot.fig.to_json())
    spec["layout"].pop("template", None)
    return script_json(json.dumps(spec, separators=(",", ":")))


# ---- header and diagnosis cards ----------------------------------------------------------------------------


def facts_table(b: ReportBundle) -> str:
    r = b.report
    run, data, ref = r["run"], r.get("data") or {}, r.get("reference") or {}
    best = r.get("best_checkpoint")
    n_samples = b.samples.filter(b.samples["checkpoint"] != "reference").height if b.samples is not None else 0
    excluded = f" ({data['n_excluded']} excluded: chosen == rejected)" if data.get("n_excluded") else ""
    facts = [("run", f"{run.get('name')} · {run.get('path', '–')} · {run.get('framework') or 'unknown'} framework"),
             ("reference", f"{ref.get('path', '–')} ({ref.get('kind', '–')})"),
             ("beta", f"{run.get('beta')} (from {run.get('beta_source', '?')}) · loss "
                      f"{run.get('loss_type') or 'unknown'}"),
             ("data", f"{data.get('path', '–')} · {data.get('data_format', 'trl')} layout · {data.get('format', '–')}"),
             ("pairs", f"{data.get('n_pairs', 0)}{excluded}"),
             ("samples", f"{n_samples} policy samples" if n_samples else "none (generation probes not run)"),
             ("checkpoints", ", ".join(c["name"] for c in r["checkpoints"]) or "none scored"),
             ("best checkpoint", f"{best['name']}: {best.get('reason', '')}" if best else "none")]
    if r.get("log_only"):
        facts.append(("verdict source", "log-only: training curves only, no checkpoint scored"))
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    return f'<table class="facts">{rows}</table>'


def header(b: ReportBundle) -> str:
    r = b.report
    verdict = str(r.get("verdict") or "healthy")
    counts = {}
    for d in r["diagnoses"]:
        counts[d.get("severity", "info")] = counts.get(d.get("severity", "info"), 0) + 1
    tally = ", ".join(f"{n} {sev}{'s' if n > 1 and sev != 'info' else ''}"
                      for sev, n in sorted(counts.items(), key=lambda kv: SEVERITY_ORDER.get(kv[0], 9)))
    warnings = "".join(f"<li>{esc(w)}</li>" for w in r.get("warnings") or [])
    return (f'<header><div class="title"><h1>dpo-doctor: {esc(r["run"]["name"])}</h1>'
            f'<span class="verdict v-{slug(verdict)}">{esc(verdict.upper())}</span>'
            f'<span class="tally">{esc(tally or "no finding")}</span></div>'
            f'<p class="summary">{esc(r.get("summary") or "")}</p>{facts_table(b)}'
            + (f'<ul class="warnings">{warnings}</ul>' if warnings else "") + "</header>")


def evidence_rows(d: dict, links: dict[str, str]) -> str:
    rows = []
    for metric, ev in (d.get("evidence") or {}).items():
        ev = ev if isinstance(ev, dict) else {"value": ev}
        name = f"<code>{esc(metric)}</code>"
        if metric in links:
            name = f'<a href="#{links[metric]}">{name}</a>'
        rows.append(f"<tr><td>{name}</td><td>{num(ev.get('value'))}</td><td>{num(ev.get('threshold'))}</td>"
                    f"<td>{num(ev.get('reference_value'))}</td></tr>")
    return ("<table class='evidence'><tr><th>evidence</th><th>value</th><th>threshold</th><th>reference</th></tr>"
            + "".join(rows) + "</table>") if rows else ""


def recommendation(rec: dict) -> str:
    knobs = [("beta", f"{rec['beta']:.3g}" if isinstance(rec.get("beta"), (int, float)) else None),
             ("variant", rec.get("variant"))]
    knobs += [(k, num(v) if isinstance(v, float) else esc(v)) for k, v in (rec.get("params") or {}).items()]
    chips = "".join(f"<span class='knob'>{esc(k)} = {v if k not in ('beta', 'variant') else esc(v)}</span>"
                    for k, v in knobs if v is not None)
    return f"<div class='fix'><b>What to change:</b> {esc(rec.get('text') or '')}<div>{chips}</div></div>"


def card(i: int, d: dict, links: dict[str, str]) -> str:
    sev = str(d.get("severity", "info"))
    explanation = d.get("explanation") or "No explanation was recorded; run: dpo-doctor explain " + str(d.get("code"))
    return (f'<div class="card sev-{slug(sev)}" id="diag-{slug(d.get("code"))}-{i}">'
            f'<div class="card-head"><span class="sev">{esc(sev.upper())}</span> <b>{esc(d.get("code"))}</b> '
            f'{esc(d.get("name", ""))} <span class="kind">{esc(d.get("kind", ""))}</span>'
            f'<span class="ck">{esc(d.get("checkpoint") or "run-wide")}</span></div>'
            f'<p class="msg">{esc(d.get("message", ""))}</p>{evidence_rows(d, links)}'
            f'{recommendation(d.get("recommendation") or {})}'
            f'<a class="explain-link" href="#explain-{i}">Why this rule exists and how it decides →</a>'
            f'<details class="explain" id="explain-{i}"><summary>About {esc(d.get("code"))} '
            f'{esc(d.get("name", ""))} (rule explanation)</summary><pre>{esc(explanation)}</pre></details></div>')


def cards(r: dict, links: dict[str, str]) -> str:
    found = sorted(enumerate(r["diagnoses"]), key=lambda t: (SEVERITY_ORDER.get(t[1].get("severity"), 9), t[0]))
    if not found:
        body = ('<p class="healthy">No finding: every rule passed. This run looks healthy'
                + (" (judged from the training log only)." if r.get("log_only") else ".") + "</p>")
    else:
        body = "".join(card(i, d, links) for i, d in found)
    return f'<section id="diagnoses"><h2>Diagnoses</h2>{body}</section>'


# ---- figure sections ---------------------------------------------------------------------------------------


NOTES = {"curves": "From the trainer's log (train solid, eval dashed). Dotted vertical lines mark scored checkpoints.",
         "trends": "One point per scored checkpoint. Dashed horizontal line: the threshold a diagnosis cites; dotted: "
                   "the reference model's own value; dotted series use the right-hand axis.",
         "distributions": "Histograms are binned for display; the statistics (quantiles, Spearman rho) are the scan's, "
                          "computed on every pair."}
MISSING = {"curves": "No training log was recorded (no trainer_state.json in the run).",
           "trends": "No checkpoint was scored.",
           "distributions": "No per-pair scores were recorded."}


def plot_section(name: str, plots: list[Plot]) -> str:
    if not plots:
        return f'<section id="{name}"><h2>{SECTION_TITLES[name]}</h2><p class="note">{MISSING[name]}</p></section>'
    divs = "".join(f'<div class="plot{" wide" if p.wide else ""}" id="fig-{p.id}"></div>' for p in plots)
    return (f'<section id="{name}"><h2>{SECTION_TITLES[name]}</h2><p class="note">{NOTES[name]}</p>'
            f'<div class="grid">{divs}</div></section>')


def metric_links(sections: dict[str, list[Plot]]) -> dict[str, str]:
    """Metric -> anchor of the first figure showing it (so evidence is one click away)."""
    out: dict[str, str] = {}
    for plots in sections.values():
        for p in plots:
            for m in p.metrics:
                out.setdefault(m, f"fig-{p.id}")
    return out


# ---- tables: worst pairs, samples, all metrics -------------------------------------------------------------


def pairs_section(b: ReportBundle) -> str:
    import polars as pl

    if b.pairs is None or b.pairs.height == 0 or not b.report["checkpoints"]:
        return ""
    last = b.report["checkpoints"][-1]["name"]
    rows = b.pairs.filter(pl.col("checkpoint") == last)
    if "excluded" in rows.columns:
        rows = rows.filter(~pl.col("excluded"))
    drift = (pl.col("logp_chosen") - pl.col("ref_logp_chosen")) if {"logp_chosen", "ref_logp_chosen"} <= set(
        rows.columns) else pl.lit(None, dtype=pl.Float64)
    rows = rows.with_columns(chosen_drift=drift)
    if b.pair_texts is not None:
        rows = rows.join(b.pair_texts.select("pair_id", "prompt", "chosen", "rejected"), on="pair_id", how="left")
    tables = [pair_table("Most negative margins", rows.sort("margin").head(N_WORST))]
    if rows["chosen_drift"].null_count() < rows.height:
        tables.append(pair_table("Largest drops of the chosen answer's log-prob vs the reference",
                                 rows.sort("chosen_drift", nulls_last=True).head(N_WORST)))
    return (f'<section id="pairs"><h2>Worst pairs at {esc(last)}</h2><p class="note">Margin = beta x (chosen log-ratio '
            f'- rejected log-ratio); chosen drift = log pi(chosen) - log pi_ref(chosen), summed over tokens.</p>'
            + "".join(tables) + "</section>")


def pair_table(title: str, rows) -> str:
    has_text = "prompt" in rows.columns
    head = "<th>pair</th><th>margin</th><th>chosen drift</th><th>tokens (c / r)</th>"
    head += "<th>prompt</th><th>chosen</th><th>rejected</th>" if has_text else ""
    body = []
    for row in rows.iter_rows(named=True):
        cells = (f"<td>{esc(row['pair_id'])}</td><td class='n'>{num(row['margin'])}</td>"
                 f"<td class='n'>{num(row['chosen_drift'])}</td>"
                 f"<td class='n'>{esc(row['len_chosen'])} / {esc(row['len_rejected'])}</td>")
        if has_text:
            cells += "".join(f"<td><div class='txt'>{esc(clip(row.get(k)))}</div></td>"
                             for k in ("prompt", "chosen", "rejected"))
        body.append(f"<tr>{cells}</tr>")
    return f"<h3>{esc(title)}</h3><div class='scroll'><table class='pairs'><tr>{head}</tr>{''.join(body)}</table></div>"


def samples_section(b: ReportBundle) -> str:
    import polars as pl

    s = b.samples
    if s is None or s.height == 0:
        return ('<section id="samples"><h2>Samples</h2><p class="note">No generation samples were recorded '
                '(the scan ran with --no-generate or without prompts).</p></section>')
    names = [c["name"] for c in b.report["checkpoints"]]
    names = [n for n in names if n in set(s["checkpoint"].unique().to_list())]
    shown = names[-1] if names else None
    options = "".join(f"<option value='{i}'{' selected' if n == shown else ''}>{esc(n)}</option>"
                      for i, n in enumerate(names))
    order = [c for c in ("greedy", "sample_idx") if c in s.columns]
    blocks = []
    for pid in sorted(s["prompt_id"].unique().to_list())[:N_PROMPTS]:
        rows = s.filter(pl.col("prompt_id") == pid)
        rows = rows.sort(order, descending=[c == "greedy" for c in order]) if order else rows
        ref = sample_cell("reference", rows.filter(pl.col("checkpoint") == "reference"), None, False)
        pol = "".join(sample_cell(n, rows.filter(pl.col("checkpoint") == n), i, n != shown)
                      for i, n in enumerate(names))
        blocks.append(f"<div class='prompt'><div class='ptext'><b>prompt {esc(pid)}</b> "
                      f"{esc(clip(rows['prompt'][0], 400))}</div><div class='pair2'>{ref}<div>{pol}</div></div></div>")
    more = s["prompt_id"].n_unique() - N_PROMPTS
    return (f'<section id="samples"><h2>Samples: reference vs policy</h2><p class="note">Same prompt, the reference '
            f'model on the left, the chosen checkpoint on the right (greedy first when recorded). '
            f'Checkpoint: <select id="ck-select" aria-label="checkpoint">{options}</select></p>{"".join(blocks)}'
            + (f'<p class="note">{more} more prompts in samples.parquet.</p>' if more > 0 else "") + "</section>")


def sample_cell(name: str, rows, index: int | None, hidden: bool) -> str:
    """One model's completion(s) for one prompt: the first shown, a few more behind <details>."""
    attrs = f" data-ck='{index}'" + (" hidden" if hidden else "") if index is not None else ""
    if rows.height == 0:
        return f"<div class='sample'{attrs}><div class='who'>{esc(name)}</div><p class='note'>no sample</p></div>"
    first, rest = rows.row(0, named=True), list(rows.slice(1, N_EXTRA_SAMPLES).iter_rows(named=True))
    def meta(row):
        bits = [("greedy" if row.get("greedy") else "sampled"), f"{row.get('n_tokens', '?')} tokens"]
        if name != "reference" and row.get("kl") is not None:
            bits.append(f"KL {num(row['kl'])} nats")
        return " · ".join(bits)
    extra = "".join(f"<div class='who'>{esc(meta(r))}</div><pre>{esc(clip(r.get('text'), 300))}</pre>" for r in rest)
    label = f"{len(rest)} more sample" + ("s" if len(rest) > 1 else "")
    return (f"<div class='sample'{attrs}><div class='who'><b>{esc(name)}</b> · {esc(meta(first))}</div>"
            f"<pre>{esc(clip(first.get('text')))}</pre>"
            + (f"<details><summary>{label}</summary>{extra}</details>" if rest else "") + "</div>")


def metrics_section(r: dict) -> str:
    ckpts = r["checkpoints"]
    if not ckpts:
        return ""
    keys = sorted({k for c in ckpts for k in c["metrics"]})
    info, ref = r.get("metric_info") or {}, (r.get("reference") or {}).get("metrics") or {}
    head = "".join(f"<th>{esc(c['name'])}</th>" for c in ckpts) + "<th>reference</th>"
    body = "".join(
        f"<tr><td><code title='{esc((info.get(k) or {}).get('description', ''))}'>{esc(k)}</code></td>"
        f"<td class='unit'>{esc((info.get(k) or {}).get('unit', ''))}</td>"
        + "".join(f"<td class='n'>{num(c['metrics'].get(k))}</td>" for c in ckpts)
        + f"<td class='n'>{num(ref.get(k))}</td></tr>" for k in keys)
    return (f'<section id="metrics"><h2>All metrics</h2><details><summary>{len(keys)} metrics x {len(ckpts)} '
            f'checkpoints</summary><div class="scroll"><table class="metrics"><tr><th>metric</th><th>unit</th>{head}'
            f'</tr>{body}</table></div></details></section>')


# ---- page --------------------------------------------------------------------------------------------------


CSS = """
*{box-sizing:border-box}body{font:14px/1.45 -apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;color:#222;
margin:0 auto;max-width:1280px;padding:0 18px 24px}nav{position:sticky;top:0;background:#fff;z-index:10;
border-bottom:1px solid #ddd;padding:6px 0;font-size:13px}nav a{margin-right:14px;color:#1565c0;text-decoration:none}
h1{margin:0;font-size:24px;display:inline}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin:26px 0 8px}
h3{margin:14px 0 6px;font-size:15px}.title{display:flex;align-items:center;gap:12px;flex-wrap:wrap;margin-top:12px}
.verdict{padding:3px 14px;border-radius:14px;color:#fff;font-weight:bold;letter-spacing:.5px}
.v-healthy{background:#2e7d32}.v-warning{background:#ef6c00}.v-error{background:#c62828}.tally{color:#555}
.summary{font-size:15px;margin:8px 0}.facts th{text-align:left;padding-right:14px;color:#555;vertical-align:top;
white-space:nowrap}.facts td{word-break:break-word}.warnings{color:#8a5a00;margin:6px 0}
.card{border:1px solid #ddd;border-left:6px solid #999;border-radius:6px;padding:8px 14px;margin:10px 0;
break-inside:avoid}.sev-error{border-left-color:#c62828}.sev-warning{border-left-color:#ef6c00}
.sev-info{border-left-color:#1565c0}.sev-error .sev{color:#c62828}.sev-warning .sev{color:#ef6c00}
.sev-info .sev{color:#1565c0}.sev{font-weight:bold}.kind{background:#eee;border-radius:8px;padding:1px 8px;
margin-left:6px;font-size:12px}.ck{float:right;color:#666}.msg{margin:6px 0}.knob{display:inline-block;
background:#e3f2fd;border-radius:8px;padding:1px 8px;margin:4px 6px 0 0;font-size:12px}.fix{margin:6px 0}
.explain-link{font-size:12px}.explain pre{background:#f7f7f7;padding:8px;border-radius:4px}
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #eee;font-size:13px;text-align:left;
vertical-align:top}.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.evidence{margin:4px 0}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(540px,1fr));gap:10px}
.plot{min-height:280px;border:1px solid #f0f0f0;border-radius:4px}.wide{grid-column:1/-1}
.scroll{overflow-x:auto}.txt{max-width:340px;max-height:9em;overflow:auto;white-space:pre-wrap;word-break:break-word}
pre{white-space:pre-wrap;word-break:break-word;margin:4px 0;font-size:12.5px}.pair2{display:grid;
grid-template-columns:1fr 1fr;gap:10px}.sample{background:#fafafa;border:1px solid #eee;border-radius:4px;
padding:4px 8px}.who{color:#555;font-size:12px}.prompt{margin:12px 0;break-inside:avoid}.ptext{margin-bottom:4px}
.note{color:#666;font-size:13px}.healthy{color:#2e7d32;font-weight:bold;font-size:15px}.unit{color:#777}
footer{margin-top:30px}
@media print{nav,.explain-link,select{display:none}.plot{break-inside:avoid;border:none}body{max-width:none}
.grid{grid-template-columns:1fr}.txt{max-height:none}}
"""
# Plot config, the samples viewer's checkpoint switch, <details> opened for printing. No data inside.
PAGE_JS = """
var CFG={displaylogo:false,responsive:true,displayModeBar:false};
var sel=document.getElementById('ck-select');
if(sel){sel.addEventListener('change',function(){document.querySelectorAll('[data-ck]').forEach(function(e){
e.hidden=e.getAttribute('data-ck')!==sel.value;});});}
window.addEventListener('beforeprint',function(){
document.querySelectorAll('details').forEach(function(d){d.open=true;});});
"""


def nav(present: list[str]) -> str:
    return "<nav>" + "".join(f'<a href="#{s}">{SECTION_TITLES[s]}</a>' for s in present) + "</nav>"


def render_html(b: ReportBundle) -> str:
    """The whole page as one string (plotly.js inline, figures drawn on load)."""
    from plotly.offline import get_plotlyjs

    if b.is_data_audit:
        from dpo_doctor.views.audit import render_audit_html

        return render_audit_html(b)

    sections = all_plots(b)
    links = metric_links(sections)
    body = [header(b), cards(b.report, links)] + [plot_section(k, v) for k, v in sections.items()]
    body += [pairs_section(b), samples_section(b), metrics_section(b.report)]
    present = [s for s in SECTION_TITLES if any(f'<section id="{s}">' in part for part in body)]
    template = script_json(json.dumps(pio.templates["plotly_white"].to_plotly_json(), separators=(",", ":")))
    calls = "\n".join(f"F={figure_json(p)};F.layout.template=T;Plotly.newPlot({json.dumps('fig-' + p.id)},F.data,"
                      "F.layout,CFG);" for plots in sections.values() for p in plots)
    r = b.report
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc('dpo-doctor: ' + str(r['run']['name']) + ' (' + str(r.get('verdict') or 'healthy') + ')')}"
            f"</title><style>{CSS}</style><script>{get_plotlyjs()}</script></head><body>{nav(present)}{''.join(body)}"
            f"<footer class='note'>dpo-doctor {esc((r.get('tool') or {}).get('version', '?'))} · report schema "
            f"{esc(r['schema_version'])} · created {esc(r.get('created', ''))} · rendered from report.json and its "
            f"Parquet tables</footer><script>var F,T={template};{PAGE_JS}{calls}</script></body></html>")
