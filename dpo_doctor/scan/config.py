"""`ScanConfig`: every flag of `dpo-doctor scan` (and `watch`), and the checks that run before any model loads.

`check_config` validates everything that can be validated from the flags alone (numbers, names, rule codes and
thresholds, the output location, the files named), so a typo costs a second, not a scan. The pipeline calls it
first; the CLI calls it before printing anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dpo_doctor.data.formats import DataSpec, check_spec
from dpo_doctor.data.hub import resolve_data_path
from dpo_doctor.errors import UserError
from dpo_doctor.files import ensure_dir
from dpo_doctor.hub import resolve_model_path

DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "float64")
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")


@dataclass(frozen=True)
class ScanConfig:
    """Every flag of `dpo-doctor scan`, one field each (see `dpo-doctor scan --help` for units and defaults)."""

    run_dir: Path
    data: Path | None  # None: diagnose from the training log alone (log-only verdict)
    ref: Path | None = None
    base: Path | None = None
    beta: float | None = None
    out: Path | None = None
    max_pairs: int | None = None
    max_length: int | None = 1024
    batch_size: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    cache_dir: Path | None = None
    device_map: str | None = None  # "auto": shard a model larger than one device (accelerate)
    seed: int = 0
    trust_pickles: bool = False
    trust_remote_code: bool = False
    generate: bool = True
    prompts: Path | None = None
    probe_suite: str | None = None
    max_prompts: int = 32
    samples_per_prompt: int = 4
    max_new_tokens: int = 64
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    rule_settings: tuple[str, ...] = ()
    render: bool = True  # the CLI renders HTML/Markdown after the scan; the pipeline itself never does
    checkpoint_filter: tuple[str, ...] = ()  # --checkpoints: names or globs (empty: all)
    skip_checkpoints: tuple[str, ...] = ()  # --skip-checkpoint: names or globs
    data_is_eval: bool = False  # --data is the trainer's own eval set: compare its eval_* log with our numbers
    log: Path | None = None  # --log: a training log to read instead of auto-detecting one in the run dir
    judge: str | None = None  # --judge: a reward-model folder or module:function scoring the probes' answers
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
    if cfg.prompts is not None and cfg.probe_suite is not None:
        raise UserError(f"--prompts {cfg.prompts} and --probe-suite {cfg.probe_suite} both given; pass one of them")
    if cfg.beta is not None and not cfg.beta > 0:
        raise UserError(f"--beta {cfg.beta}: beta must be > 0 (TRL's default is 0.1)")
    _positive(cfg.max_pairs, "--max-pairs", "pairs to score", allow_none=True)
    _positive(cfg.max_length, "--max-length", "tokens (prompt + response)", allow_none=True)
    for flag, value, what in (("--max-prompts", cfg.max_prompts, "prompts"),
                              ("--samples-per-prompt", cfg.samples_per_prompt, "samples"),
                              ("--max-new-tokens", cfg.max_new_tokens, "tokens")):
        _positive(value, flag, what)
    if cfg.batch_size != "auto" and not (cfg.batch_size.isdigit() and int(cfg.batch_size) > 0):
        raise UserError(f"--batch-size {cfg.batch_size!r}: use a positive integer (pairs per pass) or auto")
    if not DEVICE_RE.match(cfg.device):
        raise UserError(f"--device {cfg.device!r} is not a device; use auto, cpu, cuda or cuda:N")
    if cfg.dtype not in DTYPES:
        raise UserError(f"--dtype {cfg.dtype!r} unknown; use auto, float32, bfloat16, float16 or float64")
    if cfg.device_map not in (None, "auto"):
        raise UserError(f"--device-map {cfg.device_map!r}: the only value is auto")
    if cfg.probe_suite is not None:
        from dpo_doctor.data.suites import load_suite

        load_suite(cfg.probe_suite)  # unknown name or a bad user suite -> UserError, row by row
    if cfg.judge is not None and not cfg.generate:
        raise UserError(f"--judge {cfg.judge} scores the probes' answers, but --no-generate turns the probes off; "
                        "drop one of them")
    check_selection(cfg.select, cfg.ignore, cfg.rule_settings)
    check_spec(data_spec(cfg))
    if cfg.log is not None:  # an explicit log that cannot be read fails now, not after the scoring
        from dpo_doctor.trainlog import load_train_log

        load_train_log(resolve_model_path(cfg.run_dir, "RUN_DIR"), cfg.log)
    check_out(out_dir(cfg))
    return cfg


def check_out(out: Path) -> None:
    """The report folder must be (or become) a writable folder; a file in the way is named."""
    ensure_dir(out, "report folder")
