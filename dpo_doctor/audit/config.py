"""`AuditConfig`: every flag of `dpo-doctor data`, and the checks that run before anything is read or loaded."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dpo_doctor.data.hub import resolve_data_path
from dpo_doctor.compute import DTYPES, DEVICE_RE, check_compute_flags  # noqa: F401 (re-exported)
from dpo_doctor.errors import UserError
from dpo_doctor.files import ensure_dir
from dpo_doctor.hub import resolve_model_path



@dataclass(frozen=True)
class AuditConfig:
    """Every flag of `dpo-doctor data` (see `dpo-doctor data --help`)."""

    data: Path = field(metadata={"help": "Preference pairs: any file or dataset `scan --data` reads."})
    ref: Path | None = field(default=None, metadata={
        "help": "Reference model (the model DPO will start from): adds its log-probs, CHES and its tokenizer "
                "(default none: no model is loaded)"})
    tokenizer: Path | None = field(default=None, metadata={
        "help": "Tokenizer folder for token lengths and truncation without a model (default: --ref's, else "
                "whitespace words)"})
    out: Path | None = field(default=None, metadata={"help": "Report folder (default reports/data-<name>/)"})
    max_length: int | None = field(default=1024, metadata={
        "help": "The trainer's max_length: prompt + answer tokens kept, keep_start as TRL (default 1024, tokens)"})
    max_pairs: int | None = field(default=None, metadata={"help": "Audit a seeded subset of N pairs (default all)"})
    seed: int = field(default=0, metadata={"help": "Seed of the --max-pairs subset (default 0)"})
    batch_size: str = field(default="auto", metadata={"help": "Pairs per forward pass with --ref, or auto"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N (default auto)"})
    dtype: str = field(default="auto", metadata={"help": "auto (bfloat16 on CUDA, float32 on CPU), float32, ..."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow model/tokenizer code (default off)"})
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    rule_settings: tuple[str, ...] = ()


def audit_out_dir(cfg: AuditConfig) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(cfg.data)).name.split(".")[0]) or "pairs"
    return Path(cfg.out) if cfg.out else Path("reports") / f"data-{name}"


def check_audit_config(cfg: AuditConfig) -> AuditConfig:
    """One-line UserError for any flag that is wrong on its face, before any file is read or model loaded."""
    from dpo_doctor.rules import check_selection

    if not resolve_data_path(cfg.data).exists():
        raise UserError(f"PAIRS {cfg.data}: no such file or folder; pass a preference-pairs file (JSONL, JSON, "
                        "Parquet, CSV), a datasets.save_to_disk folder or a Hub dataset id")
    for flag, path in (("--ref", cfg.ref), ("--tokenizer", cfg.tokenizer)):
        if path is not None and not resolve_model_path(path, flag).exists():
            raise UserError(f"{flag} {path}: no such folder; pass a model folder or a Hub id org/name[@revision]")
    for flag, value in (("--max-length", cfg.max_length), ("--max-pairs", cfg.max_pairs)):
        if value is not None and value <= 0:
            raise UserError(f"{flag} {value}: must be a positive number")
    check_compute_flags(cfg.batch_size, cfg.device, cfg.dtype)
    check_selection(cfg.select, cfg.ignore, cfg.rule_settings)
    ensure_dir(audit_out_dir(cfg), "report folder")
    return cfg
