"""report.html: one self-contained file to attach to a training review (offline, printable, no network request).

plotly.js is embedded once; each figure is a `Plotly.newPlot` call on JSON, and the shared Plotly template is
emitted once instead of once per figure. Untrusted text (prompts, completions, run names, paths, messages) is
escaped everywhere it lands: `esc()` in HTML, `figures.plain()` inside Plotly strings, and `script_json()` over
the whole figure JSON so no `<`, `>` or `&` appears literally inside a <script> (a `</script>` in a prompt cannot
close the tag). Our own script only toggles visibility; it never builds markup from data.
"""

from __future__ import annotations

import json

import plotly.io as pio

from dpo_doctor.report import ReportBundle
from dpo_doctor.report_model import ScanReport
from dpo_doctor.views.figures import Plot, all_plots
from dpo_doctor.views.html_parts import (CSS, PAGE_JS, SEVERITY_ORDER, card, clip, esc, figure_json, num, script_json,
                                         slug)
from dpo_doctor.views.verdict_words import VERDICT_WORDS, no_finding_sentence, verdict_of_report

N_WORST = 10  # rows per worst-pairs table
N_PROMPTS = 12  # prompts in the samples viewer
N_EXTRA_SAMPLES = 4  # further samples per (prompt, checkpoint) behind a <details>
SECTION_TITLES = {"diagnoses": "Diagnoses", "curves": "Training curves", "trends": "Per-checkpoint probes",
                  "distributions": "Distributions", "pairs": "Worst pairs", "samples": "Samples",
                  "metrics": "All metrics"}


# ---- header and diagnosis cards ----------------------------------------------------------------------------


def facts_table(b: ReportBundle) -> str:
    r = b.doc
    run, data, ref, best = r.run, r.data, r.reference, r.best_checkpoint
    n_samples = b.samples.filter(b.samples["checkpoint"] != "reference").height if b.samples is not None else 0
    excluded = f" ({data.n_excluded} excluded: chosen == rejected)" if data and data.n_excluded else ""
    facts = [("run", f"{run.name} · {run.path or '–'} · {run.framework or 'unknown'} framework"),
             ("reference", f"{ref.path} ({ref.kind or '–'})" if ref else "– (–)"),
             ("beta", f"{run.beta} (from {run.beta_source or '?'}) · loss {run.loss_type or 'unknown'}"),
             ("data", f"{data.path or '–'} · {data.data_format} layout · {data.format or '–'}" if data
              else "– · trl layout · –"),
             ("pairs", f"{data.n_pairs if data else 0}{excluded}"),
             ("samples", f"{n_samples} policy samples" if n_samples else "none (generation probes not run)"),
             ("checkpoints", ", ".join(c.name for c in r.checkpoints) or "none scored"),
             ("best checkpoint", f"{best.name}: {best.reason}" if best else "none")]
    if r.log_only:
        facts.append(("verdict source", "log-only: training curves only, no checkpoint scored"))
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    return f'<table class="facts">{rows}</table>'


def header(b: ReportBundle) -> str:
    r = b.doc
    verdict = verdict_of_report(r)
    counts = {}
    for d in r.diagnoses:
        counts[d.severity] = counts.get(d.severity, 0) + 1
    tally = ", ".join(f"{n} {sev}{'s' if n > 1 and sev != 'info' else ''}"
                      for sev, n in sorted(counts.items(), key=lambda kv: SEVERITY_ORDER.get(kv[0], 9)))
    warnings = "".join(f"<li>{esc(w)}</li>" for w in r.warnings)
    return (f'<header><div class="title"><h1>dpo-doctor: {esc(r.run.name)}</h1>'
            f'<span class="verdict v-{slug(verdict)}">{esc(VERDICT_WORDS.get(verdict, verdict.upper()))}</span>'
            f'<span class="tally">{esc(tally or "no finding")}</span></div>'
            f'<p class="summary">{esc(r.summary or "")}</p>{facts_table(b)}'
            + (f'<ul class="warnings">{warnings}</ul>' if warnings else "") + "</header>")


def cards(r: ScanReport, links: dict[str, str]) -> str:
    found = sorted(enumerate(r.diagnoses), key=lambda t: (SEVERITY_ORDER.get(t[1].severity, 9), t[0]))
    if not found:
        good = verdict_of_report(r) == "healthy"
        body = f'<p class="{"healthy" if good else "unmeasured"}">{esc(no_finding_sentence(r))}</p>'
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

    if b.pairs is None or b.pairs.height == 0 or not b.doc.checkpoints:
        return ""
    last = b.doc.checkpoints[-1].name
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
    names = [c.name for c in b.doc.checkpoints]
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


def metrics_section(r: ScanReport) -> str:
    ckpts = r.checkpoints
    if not ckpts:
        return ""
    keys = sorted({k for c in ckpts for k in c.metrics})
    info, ref = r.metric_info, r.reference.metrics if r.reference else {}
    head = "".join(f"<th>{esc(c.name)}</th>" for c in ckpts) + "<th>reference</th>"
    body = "".join(
        f"<tr><td><code title='{esc(info[k].description if k in info else '')}'>{esc(k)}</code></td>"
        f"<td class='unit'>{esc(info[k].unit if k in info else '')}</td>"
        + "".join(f"<td class='n'>{num(c.metrics.get(k))}</td>" for c in ckpts)
        + f"<td class='n'>{num(ref.get(k))}</td></tr>" for k in keys)
    return (f'<section id="metrics"><h2>All metrics</h2><details><summary>{len(keys)} metrics x {len(ckpts)} '
            f'checkpoints</summary><div class="scroll"><table class="metrics"><tr><th>metric</th><th>unit</th>{head}'
            f'</tr>{body}</table></div></details></section>')


# ---- page --------------------------------------------------------------------------------------------------


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
    body = [header(b), cards(b.doc, links)] + [plot_section(k, v) for k, v in sections.items()]
    body += [pairs_section(b), samples_section(b), metrics_section(b.doc)]
    present = [s for s in SECTION_TITLES if any(f'<section id="{s}">' in part for part in body)]
    template = script_json(json.dumps(pio.templates["plotly_white"].to_plotly_json(), separators=(",", ":")))
    calls = "\n".join(f"F={figure_json(p)};F.layout.template=T;Plotly.newPlot({json.dumps('fig-' + p.id)},F.data,"
                      "F.layout,CFG);" for plots in sections.values() for p in plots)
    r = b.doc
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc('dpo-doctor: ' + r.run.name + ' (' + verdict_of_report(r) + ')')}"
            f"</title><style>{CSS}</style><script>{get_plotlyjs()}</script></head><body>{nav(present)}{''.join(body)}"
            f"<footer class='note'>dpo-doctor {esc(r.tool.version)} · report schema "
            f"{esc(r.schema_version)} · created {esc(r.created)} · rendered from report.json and its "
            f"Parquet tables</footer><script>var F,T={template};{PAGE_JS}{calls}</script></body></html>")
