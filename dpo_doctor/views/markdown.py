"""report.md: GitHub-flavoured Markdown for a PR comment (under 60,000 characters, GitHub's comment limit is 65,536).

Verdict, diagnoses table, per-checkpoint metrics table, recommendations. Every text from data or a run goes through
`md()`: HTML specials become entities, Markdown syntax is backslash-escaped, and URL schemes, `www.`, `@name` and
`#123` get a zero-width space so GitHub neither autolinks nor pings: nothing from data renders as a link, image or HTML.
"""

from __future__ import annotations

from dpo_doctor.report import ReportBundle
from dpo_doctor.report_model import ScanReport
from dpo_doctor.views.md_parts import LIMIT, VERDICT_LABEL, ZWSP, diagnoses_table, md, num, recommendations
from dpo_doctor.views.verdict_words import no_finding_sentence, verdict_of_report

__all__ = ["LIMIT", "MAX_ROWS", "ZWSP", "md", "render_markdown"]

MAX_ROWS = 24  # checkpoint rows in the metrics table (first, last and evenly spaced ones between)
TABLE_KEYS = {"rewards/margins": "margin", "rewards/accuracies": "acc", "accuracy/ranking": "rank acc",
              "margins/negative_frac": "neg frac", "drift_per_token/chosen": "drift/tok chosen",
              "drift_per_token/rejected": "drift/tok rejected", "length/margin_spearman": "rho(margin, len)",
              "gen/kl_mean": "KL (nats)", "gen/length_ratio": "len ratio", "gen/ead_per_input": "EAD",
              "gen/self_bleu": "self-BLEU"}


def verdict_block(r: ScanReport) -> list[str]:
    run = r.run
    verdict = verdict_of_report(r)
    best = r.best_checkpoint
    lines = [f"## dpo-doctor: {md(run.name)} — **{VERDICT_LABEL.get(verdict, md(verdict.upper()))}**", "",
             md(r.summary or ""), "",
             f"beta {num(run.beta)} (from {md(run.beta_source or '?')}) · loss "
             f"{md(run.loss_type or 'unknown')} · {num(r.data.n_pairs if r.data else 0)} pairs · "
             f"{len(r.checkpoints)} checkpoints" + (" · **log-only verdict** (training curves only)"
                                                   if r.log_only else ""), ""]
    if best:
        lines += [f"**Best checkpoint:** {md(best.name)} — {md(best.reason)}", ""]
    return lines


def pick_rows(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    idx = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    return [items[i] for i in idx]


def checkpoints_section(r: ScanReport) -> list[str]:
    ckpts = r.checkpoints
    if not ckpts:
        return ["No checkpoint was scored (log-only verdict).", ""]
    keys = [k for k in TABLE_KEYS if any(c.metrics.get(k) is not None for c in ckpts)]
    out = ["| checkpoint | step | " + " | ".join(TABLE_KEYS[k] for k in keys) + " |",
           "|---|---:|" + "---:|" * len(keys)]
    shown = pick_rows(ckpts, MAX_ROWS)
    for c in shown:
        out.append(f"| {md(c.name)} | {num(c.step)} | " + " | ".join(num(c.metrics.get(k)) for k in keys) + " |")
    ref = r.reference.metrics if r.reference else {}
    if any(ref.get(k) is not None for k in keys):
        out.append("| reference | – | " + " | ".join(num(ref.get(k)) for k in keys) + " |")
    note = [f"{len(ckpts) - len(shown)} of {len(ckpts)} checkpoints omitted; all are in report.html.", ""] \
        if len(shown) < len(ckpts) else []
    return out + [""] + note


def render_markdown(b: ReportBundle) -> str:
    if b.is_data_audit:
        from dpo_doctor.views.audit import render_audit_markdown

        return render_audit_markdown(b)
    r = b.doc
    lines = verdict_block(r) + ["### Diagnoses", ""] + diagnoses_table(r.diagnoses, no_finding_sentence(r))
    lines += recommendations(r.diagnoses) + ["### Per checkpoint", ""] + checkpoints_section(r)
    if r.warnings:
        lines += ["**Warnings**", ""] + [f"- {md(w)}" for w in r.warnings] + [""]
    lines.append(f"<sub>dpo-doctor {md(r.tool.version)}, report schema {num(r.schema_version)}; "
                 "charts, worst pairs and samples: report.html</sub>")
    text = "\n".join(lines) + "\n"
    if len(text) > LIMIT:  # only pathological messages get here; cut at a line end and say so
        text = text[: LIMIT - 200].rsplit("\n", 1)[0] + "\n\n… (truncated to fit a PR comment; see report.html)\n"
    return text
