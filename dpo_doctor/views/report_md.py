"""report.md: GitHub-flavoured Markdown for a PR comment (under 60,000 characters).

Every text that comes from data or a run (names, paths, messages) goes through `md()`, which turns HTML
specials into entities and backslash-escapes Markdown syntax, so nothing renders as a link, an image or HTML.
"""

from __future__ import annotations

import re

from dpo_doctor.views.bundle import ReportBundle

LIMIT = 60_000
TABLE_KEYS = {"rewards/margins": "margin", "rewards/accuracies": "acc", "accuracy/ranking": "rank acc",
              "drift_per_token/chosen": "drift/tok chosen", "drift_per_token/rejected": "drift/tok rejected",
              "length/margin_spearman": "len~margin rho", "gen/kl_mean": "KL (nats)", "gen/length_ratio": "len ratio",
              "gen/ead_per_input": "EAD", "gen/self_bleu": "self-BLEU"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:])")
SEVERITY_ICON = {"error": "🔴 error", "warning": "🟠 warning", "info": "🔵 info"}


def md(text) -> str:
    """Inert Markdown: HTML entities for & < >, backslash before Markdown syntax, one line."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return re.sub(r"\s+", " ", s).strip()


def num(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return md(v)


def _diagnoses(r: dict) -> list[str]:
    if not r["diagnoses"]:
        return ["No diagnosis: every rule passed. Verdict: **healthy**.", ""]
    out = ["| severity | code | kind | checkpoint | finding |", "|---|---|---|---|---|"]
    for d in r["diagnoses"]:
        out.append(f"| {SEVERITY_ICON.get(d['severity'], md(d['severity']))} | {md(d['code'])} | {md(d['kind'])} | "
                   f"{md(d.get('checkpoint') or 'run')} | {md(d['message'])} |")
    out += ["", "### What to change", ""]
    for d in r["diagnoses"]:
        rec = d["recommendation"]
        knobs = [f"beta → {rec['beta']:.3g}" if rec.get("beta") else "", f"variant: {rec['variant']}"
                 if rec.get("variant") else "", ", ".join(f"{k}={v}" for k, v in (rec.get("params") or {}).items())]
        knobs = [md(k) for k in knobs if k]
        out.append(f"- **{md(d['code'])} {md(d['name'])}**: {md(rec['text'])}"
                   + (f" ({'; '.join(knobs)})" if knobs else ""))
        for metric, ev in d["evidence"].items():
            out.append(f"  - `{md(metric)}` = {num(ev.get('value'))} (threshold {num(ev.get('threshold'))}, "
                       f"reference {num(ev.get('reference_value'))})")
    return out + [""]


def _checkpoints(r: dict) -> list[str]:
    ckpts = r["checkpoints"]
    keys = [k for k in TABLE_KEYS if any(c["metrics"].get(k) is not None for c in ckpts)]
    if not ckpts:
        return ["No checkpoint was scored (log-only verdict).", ""]
    out = ["| checkpoint | step | " + " | ".join(TABLE_KEYS[k] for k in keys) + " |",
           "|---|---:|" + "---:|" * len(keys)]
    for c in ckpts:
        out.append(f"| {md(c['name'])} | {c['step']} | " + " | ".join(num(c["metrics"].get(k)) for k in keys) + " |")
    ref = (r.get("reference") or {}).get("metrics") or {}
    if any(ref.get(k) is not None for k in keys):
        out.append("| reference | – | " + " | ".join(num(ref.get(k)) for k in keys) + " |")
    return out + [""]


def render_markdown(bundle: ReportBundle) -> str:
    r = bundle.report
    run, data = r["run"], r.get("data") or {}
    best = r.get("best_checkpoint")
    lines = [f"## dpo-doctor: {md(run['name'])} — **{md(r.get('verdict', 'healthy')).upper()}**", "",
             md(r.get("summary") or ""), "",
             f"beta {num(run.get('beta'))} ({md(run.get('beta_source'))}) · loss {md(run.get('loss_type') or '?')} · "
             f"{data.get('n_pairs', 0)} pairs · {len(r['checkpoints'])} checkpoints"
             + (" · **log-only verdict** (training curves only)" if r.get("log_only") else ""), ""]
    if best:
        lines += [f"**Ship:** {md(best['name'])} — {md(best['reason'])}", ""]
    lines += ["### Diagnoses", ""] + _diagnoses(r) + ["### Per checkpoint", ""] + _checkpoints(r)
    if r.get("warnings"):
        lines += ["<details><summary>Warnings</summary>", ""] + [f"- {md(w)}" for w in r["warnings"]] + ["", "</details>", ""]
    lines.append(f"<sub>dpo-doctor {md(r['tool']['version'])}, schema {r['schema_version']}; full report: report.html</sub>")
    text = "\n".join(lines) + "\n"
    if len(text) > LIMIT:
        text = text[: LIMIT - 200].rsplit("\n", 1)[0] + "\n\n… (truncated to fit a PR comment; see report.html)\n"
    return text
