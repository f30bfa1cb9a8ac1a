"""report.md: GitHub-flavoured Markdown for a PR comment (under 60,000 characters, GitHub's comment limit is 65,536).

Verdict, diagnoses table, per-checkpoint metrics table, recommendations. Every text from data or a run goes through
`md()`: HTML specials become entities, Markdown syntax is backslash-escaped, and URL schemes, `www.`, `@name` and
`#123` get a zero-width space so GitHub neither autolinks nor pings: nothing from data renders as a link, image or HTML.
"""

from __future__ import annotations

import math
import re

from dpo_doctor.report import ReportBundle

LIMIT = 60_000
MAX_CELL = 600  # characters of a message or recommendation in one table cell / list item
MAX_ROWS = 24  # checkpoint rows in the metrics table (first, last and evenly spaced ones between)
TABLE_KEYS = {"rewards/margins": "margin", "rewards/accuracies": "acc", "accuracy/ranking": "rank acc",
              "margins/negative_frac": "neg frac", "drift_per_token/chosen": "drift/tok chosen",
              "drift_per_token/rejected": "drift/tok rejected", "length/margin_spearman": "rho(margin, len)",
              "gen/kl_mean": "KL (nats)", "gen/length_ratio": "len ratio", "gen/ead_per_input": "EAD",
              "gen/self_bleu": "self-BLEU"}
SEVERITY_LABEL = {"error": "🔴 error", "warning": "🟠 warning", "info": "🔵 info"}
VERDICT_LABEL = {"healthy": "🟢 HEALTHY", "warning": "🟠 WARNING", "error": "🔴 ERROR"}
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


def verdict_block(r: dict) -> list[str]:
    run, data = r["run"], r.get("data") or {}
    verdict = str(r.get("verdict") or "healthy")
    best = r.get("best_checkpoint")
    lines = [f"## dpo-doctor: {md(run.get('name'))} — **{VERDICT_LABEL.get(verdict, md(verdict.upper()))}**", "",
             md(r.get("summary") or ""), "",
             f"beta {num(run.get('beta'))} (from {md(run.get('beta_source', '?'))}) · loss "
             f"{md(run.get('loss_type') or 'unknown')} · {num(data.get('n_pairs', 0))} pairs · "
             f"{len(r['checkpoints'])} checkpoints" + (" · **log-only verdict** (training curves only)"
                                                      if r.get("log_only") else ""), ""]
    if best:
        lines += [f"**Best checkpoint:** {md(best.get('name'))} — {md(best.get('reason', ''))}", ""]
    return lines


def diagnoses_table(r: dict) -> list[str]:
    if not r["diagnoses"]:
        return ["No diagnosis: every rule passed. This run looks **healthy**.", ""]
    out = ["| severity | code | name | checkpoint | finding | evidence (value / threshold) |",
           "|---|---|---|---|---|---|"]
    for d in r["diagnoses"]:
        ev = "; ".join(f"{md(k)} {num(e.get('value'))} / {num(e.get('threshold'))}"
                       for k, e in (d.get("evidence") or {}).items() if isinstance(e, dict))
        out.append(f"| {SEVERITY_LABEL.get(d.get('severity'), md(d.get('severity')))} | {md(d.get('code'))} | "
                   f"{md(d.get('name'))} | {md(d.get('checkpoint') or 'run-wide')} | {md(clip(d.get('message')))} | "
                   f"{ev or '–'} |")
    return out + [""]


def recommendations(r: dict) -> list[str]:
    if not r["diagnoses"]:
        return []
    out = ["### What to change", ""]
    for d in r["diagnoses"]:
        rec = d.get("recommendation") or {}
        knobs = ([f"beta → {num(rec['beta'])}"] if isinstance(rec.get("beta"), (int, float)) else []) + \
                ([f"variant {md(rec['variant'])}"] if rec.get("variant") else []) + \
                [f"{md(k)} = {num(v)}" for k, v in (rec.get("params") or {}).items()]
        out.append(f"- **{md(d.get('code'))} {md(d.get('name'))}**: {md(clip(rec.get('text')))}"
                   + (f" ({'; '.join(knobs)})" if knobs else ""))
    return out + ["", "Details: `dpo-doctor explain CODE`, and the full report in report.html.", ""]


def pick_rows(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    idx = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    return [items[i] for i in idx]


def checkpoints_section(r: dict) -> list[str]:
    ckpts = r["checkpoints"]
    if not ckpts:
        return ["No checkpoint was scored (log-only verdict).", ""]
    keys = [k for k in TABLE_KEYS if any(c["metrics"].get(k) is not None for c in ckpts)]
    out = ["| checkpoint | step | " + " | ".join(TABLE_KEYS[k] for k in keys) + " |",
           "|---|---:|" + "---:|" * len(keys)]
    shown = pick_rows(ckpts, MAX_ROWS)
    for c in shown:
        out.append(f"| {md(c['name'])} | {num(c.get('step'))} | "
                   + " | ".join(num(c["metrics"].get(k)) for k in keys) + " |")
    ref = (r.get("reference") or {}).get("metrics") or {}
    if any(ref.get(k) is not None for k in keys):
        out.append("| reference | – | " + " | ".join(num(ref.get(k)) for k in keys) + " |")
    note = [f"{len(ckpts) - len(shown)} of {len(ckpts)} checkpoints omitted; all are in report.html.", ""] \
        if len(shown) < len(ckpts) else []
    return out + [""] + note


def render_markdown(b: ReportBundle) -> str:
    if b.is_data_audit:
        from dpo_doctor.views.audit import render_audit_markdown

        return render_audit_markdown(b)
    r = b.report
    lines = verdict_block(r) + ["### Diagnoses", ""] + diagnoses_table(r) + recommendations(r)
    lines += ["### Per checkpoint", ""] + checkpoints_section(r)
    if r.get("warnings"):
        lines += ["**Warnings**", ""] + [f"- {md(w)}" for w in r["warnings"]] + [""]
    tool = r.get("tool") or {}
    lines.append(f"<sub>dpo-doctor {md(tool.get('version', '?'))}, report schema {num(r['schema_version'])}; "
                 "charts, worst pairs and samples: report.html</sub>")
    text = "\n".join(lines) + "\n"
    if len(text) > LIMIT:  # only pathological messages get here; cut at a line end and say so
        text = text[: LIMIT - 200].rsplit("\n", 1)[0] + "\n\n… (truncated to fit a PR comment; see report.html)\n"
    return text
