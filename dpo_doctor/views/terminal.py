"""The terminal summary of a finished scan: a table of the key metrics per checkpoint, the diagnoses and the fix."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dpo_doctor.report import ReportBundle
from dpo_doctor.report_model import ScanReport, Timings
from dpo_doctor.views.verdict_words import no_finding_sentence

SUMMARY_KEYS = {"rewards/margins": "margin", "rewards/accuracies": "acc", "accuracy/ranking": "rank acc",
                "drift_per_token/chosen": "drift/tok", "gen/kl_mean": "KL", "gen/length_ratio": "len x",
                "gen/ead_per_input": "EAD"}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def _layout(report: ScanReport) -> str:
    """', read as llamafactory-alpaca' when the pairs came in another trainer's layout (data.formats), else ''."""
    layout = report.data.data_format if report.data else "trl"
    return "" if layout == "trl" else f", read as {layout}"


def print_summary(bundle: ReportBundle, console: Console) -> None:
    if bundle.is_data_audit:
        from dpo_doctor.views.audit import print_audit_summary

        return print_audit_summary(bundle, console)
    report, out = bundle.doc, bundle.path
    run = report.run
    keys = [k for k in SUMMARY_KEYS if any(k in c.metrics for c in report.checkpoints)]
    if report.log_only:
        console.print(Text("log-only verdict: diagnosed from the training curves; no checkpoint scored", style="bold"))
    table = Table(caption="margin = rewards/margins, acc = rewards/accuracies, rank acc = pi(chosen) > pi(rejected), "
                  "drift/tok = chosen log-prob change per token, KL = sampled KL(pi||ref), len x = generated length "
                  "vs reference, EAD = per-prompt diversity", title=f"dpo-doctor: {run.name} (beta={run.beta:g} from "
                        f"{run.beta_source or '?'}, {report.data.n_pairs if report.data else 0} pairs"
                        f"{_layout(report)})")
    table.add_column("checkpoint", no_wrap=True)
    for k in keys:
        table.add_column(SUMMARY_KEYS[k], justify="right")
    for c in report.checkpoints:
        table.add_row(Text(c.name), *[_fmt(c.metrics.get(k)) for k in keys])
    if report.checkpoints:
        console.print(table)
    for w in report.warnings:
        console.print(Text(f"warning: {w}", style="yellow"))
    for d in report.diagnoses:
        style = {"error": "bold red", "warning": "yellow", "info": "cyan"}[d.severity]
        console.print(Text(f"{d.severity.upper():7} {d.code} {d.kind}: {d.message}", style=style))
        console.print(Text(f"        fix: {d.recommendation.text}"))
    if not report.diagnoses:
        good = report.verdict == "healthy"
        console.print(Text(f"verdict: {no_finding_sentence(report)}", style="green" if good else "bold"))
    if str(run.beta_source or "").startswith("default"):
        console.print(Text(f"verdict caveat: beta {run.beta:g} is a default (not found in the run's "
                           "files): rewards scale with beta; pass --beta", style="bold yellow"))
    split = time_split(report.timings)
    if split:
        console.print(Text(split))
    best = report.best_checkpoint
    if best:
        console.print(Text(f"best checkpoint: {best.name} ({best.reason})"))
    console.print(Text(f"report: {out / 'report.json'}"))
    if (out / "report.html").exists():
        console.print(Text(f"html:   {out / 'report.html'}"))


STAGE_NAMES = {"startup": "startup", "discovery": "discovery", "data": "data", "cache": "cache lookups", "loading": "loading models", "pair_scoring": "pair scoring",
               "sampling": "sampling", "kl_scoring": "KL scoring", "judging": "judging",
               "metrics_rules": "metrics and rules", "rendering": "rendering"}


def time_split(timings: Timings | None) -> str:
    """`time: 41.2 s = loading models 12.0 s (29%), sampling 20.1 s (49%), ...` with what to cut when the
    generation probes dominate; '' when the report has no timings."""
    if timings is None or not timings.stages:
        return ""
    stages = timings.stages
    total = timings.total_s or sum(stages.values()) or 1e-9
    parts = [f"{STAGE_NAMES.get(k, k)} {v:.1f} s ({100 * v / total:.0f}%)"
             for k, v in sorted(stages.items(), key=lambda kv: -kv[1]) if v >= 0.05]
    probes = stages.get("sampling", 0.0) + stages.get("kl_scoring", 0.0)
    hint = "; the generation probes took most of it: --max-prompts N or --no-generate cut it" \
        if probes > 0.5 * total else ""
    return f"time: {total:.1f} s = " + ", ".join(parts) + hint


def print_compare_summary(bundle: ReportBundle, console: Console) -> None:
    """A compare report: one row per run, then the pick and the next run's settings."""
    r = bundle.doc
    signal = r.quality.signal or "rewards/accuracies"
    table = Table(title=f"dpo-doctor compare: {r.name} ({len(r.runs)} runs, quality: {r.quality.label})")
    for col in ("run", "beta", "lr", "verdict", f"peak {signal}", "last KL", "diagnoses"):
        table.add_column(col, justify="right" if col in ("beta", "lr", "last KL") else "left")
    for x in r.runs:
        vals = [c.metrics.get(signal) for c in x.checkpoints if c.metrics.get(signal) is not None]
        kl = x.checkpoints[-1].metrics.get("gen/kl_mean") if x.checkpoints else None
        table.add_row(Text(x.name), _fmt(x.beta), _fmt(x.learning_rate), Text(x.verdict),
                      _fmt(max(vals) if vals else None), _fmt(kl),
                      Text(", ".join(d.code for d in x.diagnoses) or "none"))
    console.print(table)
    for w in r.warnings:
        console.print(Text(f"warning: {w}", style="yellow"))
    best, rec = r.best, r.recommendation
    if best:
        console.print(Text(f"ship {best.run}/{best.checkpoint} (confidence: {best.confidence}): "
                           f"{best.reason}", style="bold green"))
    console.print(Text(f"next run: beta {_fmt(rec.beta)}, learning rate {_fmt(rec.learning_rate)}: "
                       f"{rec.text}"))
    console.print(Text(f"report: {bundle.path / 'report.html'}"))
