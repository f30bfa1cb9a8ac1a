"""Writing a converted checkpoint into the cache: one staging folder beside the target, moved into place whole.

DeepSpeed ZeRO folders (engine/zero.py) and FSDP sharded checkpoints (engine/fsdp.py) are both converted once into
safetensors under the cache; both need the same care: enough free disk, a private temporary folder, an atomic move
(another process may have finished the same conversion first), and one-line errors that say what to do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from dpo_doctor.errors import UserError
from dpo_doctor.files import ensure_dir


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


@contextlib.contextmanager
def staged_folder(source: Path, out: Path, size: int, weights: str) -> Iterator[Path]:
    """A fresh folder beside `out` for the conversion of `source` (about `size` bytes) to write into; when the block
    ends it becomes `out`, which must then hold `weights`. An OSError anywhere is a one-line UserError."""
    ensure_dir(out.parent, "cache folder (--cache-dir)")
    free = shutil.disk_usage(out.parent).free
    if free < size + (64 << 20):
        raise UserError(f"converting {source} needs {human_bytes(size)} in {out.parent} but only "
                        f"{human_bytes(free)} is free; free some space or pass --cache-dir on a bigger disk")
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        with contextlib.suppress(OSError):
            os.replace(tmp, out)  # another process may have finished the same conversion first
        if not (out / weights).is_file():
            raise UserError(f"could not move the converted checkpoint into {out}; check the cache folder")
    except OSError as exc:
        raise UserError(f"converting {source} into {out.parent} failed ({exc}); check the cache folder or pass "
                        "--cache-dir") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
