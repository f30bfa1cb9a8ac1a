"""`ScanConfig`: every flag of `dpo-doctor scan` (and `watch`), and the checks that run before any model loads.

`check_config` validates everything that can be validated from the flags alone (numbers, names, rule codes and
thresholds, the output location, that the files named exist), without reading any file, so a typo costs a second,
not a scan. The pipeline calls it once, first (`scan(cfg, checked=True)` skips it for a config already checked,
as `watch` does), then reads each input once, before any model loads, so a bad file also fails early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dpo_doctor.data.formats import DataSpec, check_spec
from dpo_doctor.data.hub import resolve_data_path
from dpo_doctor.compute import DTYPES, DEVICE_RE, check_compute_flags  # noqa: F401 (re-exported)
from dpo_doctor.errors import UserError
from dpo_doctor.files import ensure_dir
from dpo_doctor.hub import resolve_model_path



def _flag(default, help: str, **spelling):
    """A field that is also a `dpo-doctor scan`/`watch` flag: `help` states the default and the unit. The CLI makes
    every field with a help text a flag named after it (`max_pairs` -> `--max-pairs`; a bool -> `--x/--no-x`;
    a tuple -> a repeatable flag whose values may also be comma-separated); `flag="--name"` keeps another spelling
    and `aliases=("--other",)` adds more."""
    return field(default=default, metadata={"help": help, **spelling})


@dataclass(frozen=True)
class ScanConfig:
    """Every setting of `dpo-doctor scan` (and `watch`), one field each; the CLI's flags are made from these fields
    (name, default, help), and every other caller (the callback, `repro`, the zoo) builds one with
    `dataclasses.replace`. `run_dir` is the commands' argument."""

    run_dir: Path
    data: Path | None = _flag(None, "Preference pairs: JSONL, JSON, Parquet, CSV or a datasets.save_to_disk folder, in any of TRL's four formats or LLaMA-Factory, OpenRLHF and ms-swift layouts (see --data-format). Without it: a log-only diagnosis from the training log.")
    ref: Path | None = _flag(None, "Reference model (the model DPO started from): full dir or LoRA adapter dir. Default: a ref/ sub-adapter, else the adapters' base.")
    base: Path | None = _flag(None, "Base model for LoRA adapters whose base_model_name_or_path does not exist here, or the HF model folder whose config.json describes ZeRO or FSDP sharded checkpoints (the Trainer saves none beside the shards).")
    beta: float | None = _flag(None, "DPO beta for implicit rewards. Default: the run's own (training_args.bin read without unpickling, W&B/TensorBoard args, LLaMA-Factory/ms-swift configs), else 0.1 (TRL's default).")
    out: Path | None = _flag(None, "Report folder (created if missing). Default: reports/<run-name>/.")
    max_pairs: int | None = _flag(None, "Score a deterministic (seeded) subset of N pairs. Default: all.")
    max_length: int | None = _flag(1024, "Truncate prompt+response to N tokens, keep_start, as TRL does (default 1024).")
    batch_size: str = _flag("auto", "Pairs per forward pass, or auto (a token budget from free memory, length-bucketed).")
    device: str = _flag("auto", "auto (CUDA if present, else CPU), cpu, cuda, cuda:N.")
    dtype: str = _flag("auto", "auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16.")
    cache_dir: Path | None = _flag(None, "Score cache. Default: $DPO_DOCTOR_CACHE or ~/.cache/dpo-doctor.")
    device_map: str | None = _flag(None, "auto: spread a model too large for one GPU over all GPUs (and CPU RAM) with accelerate.")
    seed: int = _flag(0, "Seed for --max-pairs subsets and sampling (default 0).")
    trust_pickles: bool = _flag(False, "Allow reading pytorch_model.bin weights and DeepSpeed ZeRO global_stepN/ checkpoints (pickles: only for runs you trust; read with torch.load(weights_only=True)). Not needed for beta.")
    trust_remote_code: bool = _flag(False, "Allow model and tokenizer code from the checkpoint dirs (never on by default).")
    generate: bool = _flag(True, "Generation probes (length, KL, diversity); --no-generate gives a quick pairs-only scan (default on).")
    prompts: Path | None = _flag(None, "Prompts for generation probes (JSONL with a prompt field). Default: the pairs' prompts. Combines with a --probe-suite that has answers.")
    probe_suite: str | None = _flag(None, "A probe suite: a shipped name (default, arithmetic, format, multiple_choice: verifiable, graded as task/accuracy next to the run's own prompts; open_ended, short_answer: prompts only) or your own folder with manifest.json / JSONL of {prompt, answer, check} (make one with: dpo-doctor suite make).")
    judge: str | None = _flag(None, "Score each checkpoint's answers against the reference's with a reward-model folder (safetensors) or module:function (prompts, completions) -> floats: judge/win_rate.")
    max_prompts: int = _flag(32, "Prompts used by generation probes (default 32).")
    samples_per_prompt: int = _flag(4, "Samples per prompt at temperature 1, for KL and diversity (default 4).")
    max_new_tokens: int = _flag(64, "Longest generated completion, in tokens (default 64).")
    select: tuple[str, ...] = _flag((), "Only these rule codes or prefixes (comma-separated or repeated, e.g. DPO101,DPO2).")
    ignore: tuple[str, ...] = _flag((), "Skip these rule codes or prefixes (comma-separated or repeated).")
    rule_settings: tuple[str, ...] = _flag((), "Override a rule threshold, e.g. --set DPO101.max_ratio=1.5 (repeatable; see dpo-doctor explain CODE).", flag="--set")
    render: bool = _flag(True, "Render report.html and report.md after the scan; --no-render writes report.json and tables only (default on).")
    checkpoint_filter: tuple[str, ...] = _flag((), "Only these checkpoints: comma-separated names or globs, e.g. 'checkpoint-1*'. Default: all.", flag="--checkpoints")
    skip_checkpoints: tuple[str, ...] = _flag((), "Leave out a checkpoint (name or glob; repeatable), e.g. one with NaN weights.", flag="--skip-checkpoint")
    data_is_eval: bool = _flag(False, "--data is the eval set the trainer logged eval_* on: check the trainer's numbers against ours (DPO004).")
    log: Path | None = _flag(None, "Training log to read (trainer_state.json, trainer_log.jsonl, ...). Default: found in the run dir.")
    data_format: str | None = field(default=None, metadata={"help": (
        "Layout of --data: trl, llamafactory-alpaca, llamafactory-sharegpt, openrlhf, ms-swift, columns (aliases "
        "alpaca, sharegpt, llamafactory, swift). Default: detected from the columns; report.json records it.")})
    columns: str | None = field(default=None, metadata={"help": (
        "Which columns hold what: prompt=COL,chosen=COL,rejected=COL[,system=COL] (OpenRLHF's prompt/chosen/"
        "rejected keys too). Default: the format's own names.")})
    input_template: str | None = field(default=None, metadata={"help": (
        "OpenRLHF's --input_template: the prompt goes where {} is, e.g. $'User: {}\\nAssistant: ' (implies "
        "--data-format openrlhf). Default: none.")})
    template: str | None = field(default=None, metadata={"help": (
        "LLaMA-Factory template the run trained with (empty or default): tokenize its alpaca/sharegpt pairs as "
        "LLaMA-Factory does, --max-length acting as its cutoff_len. Default: TRL's tokenization.")})
    quality: bool = field(default=True, metadata={"help": "Grade answers on the shipped default verifiable suite "
                          "(probes/default: format constraints, arithmetic, multiple choice) next to the run's own "
                          "prompts, unless --probe-suite or --judge gives a quality signal; --no-quality skips it "
                          "(default on)"})


def data_spec(cfg: ScanConfig) -> DataSpec:
    """How to read --data's columns (data.formats)."""
    return DataSpec(data_format=cfg.data_format, columns=cfg.columns, input_template=cfg.input_template,
                    template=cfg.template)


def run_name(run_dir: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(run_dir).resolve().name) or "run"


def out_dir(cfg: ScanConfig) -> Path:
    return Path(cfg.out) if cfg.out else Path("reports") / run_name(Path(cfg.run_dir))


def _positive(value, flag: str, what: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise UserError(f"{flag} {value}: must be a positive number of {what}")


def _existing(path: Path | None, flag: str, what: str, resolve=None) -> None:
    """`path` must exist, or (with `resolve`) be a Hub id that resolves: uncached offline is a UserError there."""
    if path is not None and not (resolve(path, flag) if resolve else Path(path)).exists():
        raise UserError(f"{flag} {path}: no such file or folder; pass {what}")


def check_config(cfg: ScanConfig) -> ScanConfig:
    """Raise a one-line UserError for any flag that is wrong on its face; returns cfg unchanged."""
    from dpo_doctor.rules import check_selection

    if not resolve_model_path(cfg.run_dir, "RUN_DIR").exists():  # a Hub id resolves to its cached snapshot
        raise UserError(f"{cfg.run_dir} does not exist; pass a training output dir (with checkpoint-N/ folders), "
                        "a model dir or a Hub id org/name[@revision]")
    _existing(cfg.data, "--data", "a preference-pairs file or dataset folder", resolve_data_path)
    _existing(cfg.ref, "--ref", "the reference model's folder", resolve_model_path)
    _existing(cfg.base, "--base", "the adapters' base model folder", resolve_model_path)
    _existing(cfg.prompts, "--prompts", "a JSONL file of prompts or a dataset", resolve_data_path)
    _existing(cfg.log, "--log", "a training log file or folder")
    if cfg.beta is not None and not cfg.beta > 0:
        raise UserError(f"--beta {cfg.beta}: beta must be > 0 (TRL's default is 0.1)")
    _positive(cfg.max_pairs, "--max-pairs", "pairs to score", allow_none=True)
    _positive(cfg.max_length, "--max-length", "tokens (prompt + response)", allow_none=True)
    for flag, value, what in (("--max-prompts", cfg.max_prompts, "prompts"),
                              ("--samples-per-prompt", cfg.samples_per_prompt, "samples"),
                              ("--max-new-tokens", cfg.max_new_tokens, "tokens")):
        _positive(value, flag, what)
    check_compute_flags(cfg.batch_size, cfg.device, cfg.dtype)
    if cfg.device_map not in (None, "auto"):
        raise UserError(f"--device-map {cfg.device_map!r}: the only value is auto")
    if cfg.probe_suite is not None:
        from dpo_doctor.data.suites import find_suite

        find_suite(cfg.probe_suite)  # an unknown name or a missing path; its rows are checked when the scan reads it
    if cfg.judge is not None and not cfg.generate:
        raise UserError(f"--judge {cfg.judge} scores the probes' answers, but --no-generate turns the probes off; "
                        "drop one of them")
    check_selection(cfg.select, cfg.ignore, cfg.rule_settings)
    check_spec(data_spec(cfg))
    check_out(out_dir(cfg))
    return cfg


def check_out(out: Path) -> None:
    """The report folder must be (or become) a writable folder; a file in the way is named."""
    ensure_dir(out, "report folder")
