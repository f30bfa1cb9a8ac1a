"""The flags every command that runs a model shares (`--batch-size`, `--device`, `--dtype`): their accepted values
and their one check. No torch here, so a typo fails before anything heavy is imported (`scan`, `watch`, `compare`
and `data --ref` all call `check_compute_flags`)."""

from __future__ import annotations

import re

from dpo_doctor.errors import UserError

DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "float64")
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")


def check_compute_flags(batch_size: str, device: str, dtype: str) -> None:
    """One-line UserError for a batch size, device or dtype that is wrong on its face."""
    if batch_size != "auto" and not (batch_size.isdigit() and int(batch_size) > 0):
        raise UserError(f"--batch-size {batch_size!r}: use a positive integer (pairs per pass) or auto")
    if not DEVICE_RE.match(device):
        raise UserError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N")
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r} unknown; use auto, float32, bfloat16, float16 or float64")
