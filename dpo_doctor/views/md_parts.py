"""Pieces every Markdown view shares (scan, data audit, compare): the escaper `md()`, number cells, the verdict and
severity labels, the diagnoses table and the list of fixes. Every text from data or a run goes through `md()`."""

from __future__ import annotations

import math
import re

from dpo_doctor.report_model import DiagnosisRecord

LIMIT = 60_000
MAX_CELL = 600  # characters of a message or recommendation in one table cell / list item
SEVERITY_LABEL = {"error": "🔴 error", "warning": "🟠 warning", "info": "🔵 info"}
VERDICT_LABEL = {"healthy": "🟢 HEALTHY", "no-failure-found": "⚪ NO FAILURE FOUND (quality not measured)",
                 "warning": "🟠 WARNING", "error": "🔴 ERROR"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()!|~$])")  # inline syntax (links, images, code, emphasis, tables, math)
_LINE_START = re.compile(r"^([#+=-]|\d+(?=\.))")  # headings, lists, setext underlines when text opens a line
ZWSP = "\u200b"  # breaks GitHub's autolinks, @mentions and #123 references without visible change


def md(text) -> str:
    """Inert inline Markdown: one line, entities for & < >, backslashes before syntax, no autolink or @mention."""
    s = " ".join(str("" if text is None else text).split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = _LINE_START.sub(lambda m: m.group(1) + "\\" if m.group(1)[0].isdigit() else "\\" + m.group(1), s)
    s = re.sub(r"(?i)(://|www\.|@|\b(?:mailto|xmpp):)", lambda m: m.group(0)[0] + ZWSP + m.group(0)[1:], s)
    return re.sub(r"#(?=\d)", "#" + ZWSP, s)


def clip(text, n: int = MAX_CELL) -> str:
    s = " ".join(str("" if text is None else text).split())
    return s if len(s) <= n else s[:n].rstrip() + " …"


def num(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return md(v)
    return f"{v:.4g}" if isinstance(v, float) else md(v)


def diagnoses_table(diagnoses: list[DiagnosisRecord], no_finding: str) -> list[str]:
    """The findings as a table; `no_finding`: the sentence shown when there is none."""
    if not diagnoses:
        return [md(no_finding), ""]
    out = ["| severity | code | name | checkpoint | finding | evidence (value / threshold) |",
           "|---|---|---|---|---|---|"]
    for d in diagnoses:
        ev = "; ".join(f"{md(k)} {num(e.value)} / {num(e.threshold)}" for k, e in d.evidence.items())
        out.append(f"| {SEVERITY_LABEL.get(d.severity, md(d.severity))} | {md(d.code)} | "
                   f"{md(d.name)} | {md(d.checkpoint or 'run-wide')} | {md(clip(d.message))} | "
                   f"{ev or '–'} |")
    return out + [""]


def recommendations(diagnoses: list[DiagnosisRecord]) -> list[str]:
    if not diagnoses:
        return []
    out = ["### What to change", ""]
    for d in diagnoses:
        rec = d.recommendation
        knobs = ([f"beta → {num(rec.beta)}"] if rec.beta is not None else []) + \
                ([f"variant {md(rec.variant)}"] if rec.variant else []) + \
                [f"{md(k)} = {num(v)}" for k, v in rec.params.items()]
        out.append(f"- **{md(d.code)} {md(d.name)}**: {md(clip(rec.text))}"
                   + (f" ({'; '.join(knobs)})" if knobs else ""))
    return out + ["", "Details: `dpo-doctor explain CODE`, and the full report in report.html.", ""]
