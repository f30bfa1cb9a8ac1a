"""Writing files so that nothing half-written is ever left behind: the one atomic-write helper.

Every file dpo-doctor writes (report.json, tables, HTML, cache entries, run configs) goes through `atomic_path`:
the content is written to a temporary sibling and renamed over the target only when complete. On any failure the
temporary file is removed, and a full disk or a read-only location becomes a `UserError` that names the place.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dpo_doctor.errors import UserError

_SPACE = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
          errno.EFBIG: "the file size limit was reached"}


def ensure_dir(path: Path, what: str = "output folder") -> Path:
    """mkdir -p with a one-line error when a file is in the way or the place is not writable."""
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise UserError(f"cannot use {path} as the {what}: {parent} is a file, not a folder. "
                            "Pass --out a folder path (it is created if missing)")
        if parent.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the {what} {path}: {exc.strerror or exc}. Pass a writable location") from None
    return path


def io_error(exc: OSError, path: Path) -> UserError:
    """The one message for a failed write: where, and what to do."""
    why = _SPACE.get(exc.errno)
    if why:
        return UserError(f"{why} while writing {path} (in {path.parent}); free space there or pass another "
                         "location (--out, --cache-dir). Scores finished before this are kept in the cache")
    return UserError(f"cannot write {path}: {exc.strerror or exc}. Pass a writable location")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it over `path` on success, delete it on any failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise io_error(exc, path) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    """Remove a temporary file; one that could not even be created (its folder is a file) is nothing to remove."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def write_atomic(path: Path, content: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to `path` atomically; returns `path`."""
    with atomic_path(path) as tmp:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8")
    return Path(path)
