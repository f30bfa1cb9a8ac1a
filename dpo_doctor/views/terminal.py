"""The terminal summary of a finished scan: a table of the key metrics per checkpoint, the diagnoses and the fix."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dpo_doctor.report import ReportBundle

SUMMARY_KEYS = {"rewards/margins": "margin", "rewards/accuracies": "acc", "accuracy/ranking": "rank acc",
                "drift_per_token/chosen": "drift/tok", "gen/kl_mean": "KL", "gen/length_ratio": "len x",
                "gen/ead_per_input": "EAD"}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def print_summary(bundle: ReportBundle, console: Console) -> None:
    report, out = bundle.report, bundle.path
    keys = [k for k in SUMMARY_KEYS if any(k in c["metrics"] for c in report["checkpoints"])]
    if report.get("log_only"):
        console.print(Text("log-only verdict: diagnosed from the training curves; no checkpoint scored", style="bold"))
    table = Table(caption="margin = rewards/margins, acc = rewards/accuracies, rank acc = pi(chosen) > pi(rejected), "
                  "drift/tok = chosen log-prob change per token, KL = sampled KL(pi||ref), len x = generated length "
                  "vs reference, EAD = per-prompt diversity", title=f"dpo-doctor: {report['run']['name']} (beta={report['run']['beta']:g}, "
                        f"{(report.get('data') or {}).get('n_pairs', 0)} pairs)")
    table.add_column("checkpoint", no_wrap=True)
    for k in keys:
        table.add_column(SUMMARY_KEYS[k], justify="right")
    for c in report["checkpoints"]:
        table.add_row(Text(c["name"]), *[_fmt(c["metrics"].get(k)) for k in keys])
    if report["checkpoints"]:
        console.print(table)
    for w in report.get("warnings", []):
        console.print(Text(f"warning: {w}", style="yellow"))
    for d in report["diagnoses"]:
        style = {"error": "bold red", "warning": "yellow", "info": "cyan"}[d["severity"]]
        console.print(Text(f"{d['severity'].upper():7} {d['code']} {d['kind']}: {d['message']}", style=style))
        console.print(Text(f"        fix: {d['recommendation']['text']}"))
    if not report["diagnoses"]:
        console.print(Text("verdict: healthy, no finding", style="green"))
    split = time_split(report.get("timings"))
    if split:
        console.print(Text(split))
    best = report.get("best_checkpoint")
    if best:
        console.print(Text(f"best checkpoint: {best['name']} ({best['reason']})"))
    console.print(Text(f"report: {out / 'report.json'}"))
    if (out / "report.html").exists():
        console.print(Text(f"html:   {out / 'report.html'}"))


STAGE_NAMES = {"startup": "startup", "discovery": "discovery", "data": "data", "cache": "cache lookups", "loading": "loading models", "pair_scoring": "pair scoring",
               "sampling": "sampling", "kl_scoring": "KL scoring", "judging": "judging",
               "metrics_rules": "metrics and rules", "rendering": "rendering"}


def time_split(timings: dict | None) -> str:
    """`time: 41.2 s = loading models 12.0 s (29%), sampling 20.1 s (49%), ...` with what to cut when the
    generation probes dominate; '' when the report has no timings."""
    if not timings or not timings.get("stages"):
        return ""
    total = timings["total_s"] or sum(timings["stages"].values()) or 1e-9
    parts = [f"{STAGE_NAMES.get(k, k)} {v:.1f} s ({100 * v / total:.0f}%)"
             for k, v in sorted(timings["stages"].items(), key=lambda kv: -kv[1]) if v >= 0.05]
    probes = timings["stages"].get("sampling", 0.0) + timings["stages"].get("kl_scoring", 0.0)
    hint = "; the generation probes took most of it: --max-prompts N or --no-generate cut it" \
        if probes > 0.5 * total else ""
    return f"time: {total:.1f} s = " + ", ".join(parts) + hint
