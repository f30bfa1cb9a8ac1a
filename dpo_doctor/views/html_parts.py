"""Pieces every HTML view shares (scan, data audit, compare): escaping, number cells, the page's CSS and script,
and the diagnosis card. Untrusted text goes through `esc()`; JSON inside <script> through `script_json()`."""

from __future__ import annotations

import html
import json
import math
import re

from dpo_doctor.report_model import DiagnosisRecord, Recommendation
from dpo_doctor.views.figures import Plot

MAX_TEXT = 500  # characters of a pair/sample text shown in a table cell (the full text stays in the parquet)
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


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


def evidence_rows(d: DiagnosisRecord, links: dict[str, str]) -> str:
    rows = []
    for metric, ev in d.evidence.items():
        name = f"<code>{esc(metric)}</code>"
        if metric in links:
            name = f'<a href="#{links[metric]}">{name}</a>'
        rows.append(f"<tr><td>{name}</td><td>{num(ev.value)}</td><td>{num(ev.threshold)}</td>"
                    f"<td>{num(ev.reference_value)}</td></tr>")
    return ("<table class='evidence'><tr><th>evidence</th><th>value</th><th>threshold</th><th>reference</th></tr>"
            + "".join(rows) + "</table>") if rows else ""


def recommendation(rec: Recommendation) -> str:
    knobs = [("beta", f"{rec.beta:.3g}" if rec.beta is not None else None), ("variant", rec.variant)]
    knobs += [(k, num(v) if isinstance(v, float) else esc(v)) for k, v in rec.params.items()]
    chips = "".join(f"<span class='knob'>{esc(k)} = {v if k not in ('beta', 'variant') else esc(v)}</span>"
                    for k, v in knobs if v is not None)
    return f"<div class='fix'><b>What to change:</b> {esc(rec.text)}<div>{chips}</div></div>"


def card(i: int, d: DiagnosisRecord, links: dict[str, str]) -> str:
    explanation = d.explanation or "No explanation was recorded; run: dpo-doctor explain " + d.code
    return (f'<div class="card sev-{slug(d.severity)}" id="diag-{slug(d.code)}-{i}">'
            f'<div class="card-head"><span class="sev">{esc(d.severity.upper())}</span> <b>{esc(d.code)}</b> '
            f'{esc(d.name)} <span class="kind">{esc(d.kind)}</span>'
            f'<span class="ck">{esc(d.checkpoint or "run-wide")}</span></div>'
            f'<p class="msg">{esc(d.message)}</p>{evidence_rows(d, links)}'
            f'{recommendation(d.recommendation)}'
            f'<a class="explain-link" href="#explain-{i}">Why this rule exists and how it decides →</a>'
            f'<details class="explain" id="explain-{i}"><summary>About {esc(d.code)} '
            f'{esc(d.name)} (rule explanation)</summary><pre>{esc(explanation)}</pre></details></div>')


CSS = """
*{box-sizing:border-box}body{font:14px/1.45 -apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;color:#222;
margin:0 auto;max-width:1280px;padding:0 18px 24px}nav{position:sticky;top:0;background:#fff;z-index:10;
border-bottom:1px solid #ddd;padding:6px 0;font-size:13px}nav a{margin-right:14px;color:#1565c0;text-decoration:none}
h1{margin:0;font-size:24px;display:inline}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin:26px 0 8px}
h3{margin:14px 0 6px;font-size:15px}.title{display:flex;align-items:center;gap:12px;flex-wrap:wrap;margin-top:12px}
.verdict{padding:3px 14px;border-radius:14px;color:#fff;font-weight:bold;letter-spacing:.5px}
.v-healthy{background:#2e7d32}.v-no-failure-found{background:#546e7a}.unmeasured{font-weight:bold}.v-warning{background:#ef6c00}.v-error{background:#c62828}.tally{color:#555}
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
