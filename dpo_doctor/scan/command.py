"""The terminal side of `scan`: rich progress bars while scoring, a summary table when done, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from dpo_doctor.engine import distributed
from dpo_doctor.scan.pipeline import ScanConfig, scan

SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}
SUMMARY_KEYS = {"rewards/margins": "margin", "rewards/accuracies": "acc", "accuracy/ranking": "rank acc",
                "drift_per_token/chosen": "drift/tok", "gen/kl_mean": "KL", "gen/length_ratio": "len x",
                "gen/ead_per_input": "EAD"}


def run_scan_command(cfg: ScanConfig, fail_on: str | None = None, console: Console | None = None) -> int:
    console = console or Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bars:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        out = scan(cfg, progress=progress)
    if not distributed.init().is_main:  # under torchrun, rank 0 writes and prints the report
        return 0
    report = json.loads((out / "report.json").read_text())
    print_summary(report, out, Console())
    worst = max((SEVERITY_RANK[d["severity"]] for d in report["diagnoses"]), default=-1)
    return 1 if fail_on and worst >= SEVERITY_RANK[fail_on] else 0


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def print_summary(report: dict, out: Path, console: Console) -> None:
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
    best = report.get("best_checkpoint")
    if best:
        console.print(Text(f"best checkpoint: {best['name']} ({best['reason']})"))
    console.print(Text(f"report: {out / 'report.json'}"))
    if (out / "report.html").exists():
        console.print(Text(f"html:   {out / 'report.html'}"))
