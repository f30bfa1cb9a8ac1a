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
def scan(
    run_dir: Path = typer.Argument(..., help="Training output dir (checkpoint-N/ sub-dirs and/or a model at the root), or one model dir."),
    data: Path = typer.Option(..., "--data", help="Preference pairs: JSONL, JSON, Parquet, CSV or a datasets.save_to_disk folder (TRL formats)."),
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
    from dpo_doctor.scan import ScanConfig
    from dpo_doctor.scan_cli import run_scan_command

    if fail_on not in (None, "warning", "error"):
        raise UserError(f"--fail-on {fail_on!r}: use warning or error")
    split = lambda s: tuple(c.strip().upper() for c in s.split(",") if c.strip()) if s else ()  # noqa: E731
    cfg = ScanConfig(run_dir=run_dir, data=data, ref=ref, base=base, beta=beta, out=out, max_pairs=max_pairs,
                     max_length=max_length, batch_size=batch_size, device=device, dtype=dtype, cache_dir=cache_dir,
                     seed=seed, trust_pickles=trust_pickles, trust_remote_code=trust_remote_code,
                     generate=not no_generate, prompts=prompts, probe_suite=probe_suite, max_prompts=max_prompts,
                     samples_per_prompt=samples_per_prompt, max_new_tokens=max_new_tokens, select=split(select),
                     ignore=split(ignore), rule_settings=tuple(set_ or ()), render=not no_render)
    code = run_scan_command(cfg, fail_on=fail_on)
    if code:
        raise typer.Exit(code)


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: UserError -> one line on stderr, exit 2."""
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
