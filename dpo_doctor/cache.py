"""On-disk cache of per-pair scores, keyed by a fingerprint of everything that changes them.

Key = sha256(model weights identity, token ids of the pairs (covers data, tokenizer and truncation settings),
dtype, device kind, engine version). The reference is scored once per key; each checkpoint too. A partial result
(NaN = not yet scored) is saved on interrupt, so a re-run resumes. Files are `.npz` written atomically
(dpo_doctor.files: no half-written entry is ever left, a full disk is a one-line error) and read with
`allow_pickle=False`: nothing is ever unpickled. A damaged entry (cut off, junk, missing or ill-shaped arrays)
counts as missing: it is deleted, noted in `notes`, and the caller rescores and saves a new one.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from dpo_doctor.errors import UserError
from dpo_doctor.files import atomic_path

ENGINE_VERSION = "pairs-v1"
SCORE_KEYS = ("logp_chosen", "logp_rejected", "len_chosen", "len_rejected")  # engine.pairs.PairScores.arrays()
_UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def default_cache_dir() -> Path:
    return Path(os.environ.get("DPO_DOCTOR_CACHE", Path.home() / ".cache" / "dpo-doctor"))


def score_key(model_fingerprint: str, pairs_fingerprint: str, dtype: str, device_kind: str) -> str:
    parts = (ENGINE_VERSION, model_fingerprint, pairs_fingerprint, dtype, device_kind)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


class ScoreCache:
    """`load(key)` -> dict of arrays or None; `save(key, arrays)` atomically. A damaged entry counts as missing.

    notes: one line per damaged entry met (the scan adds them to the report's warnings and prints them).
    """

    def __init__(self, root: Path):
        self.dir = Path(root) / "scores"
        self.notes: list[str] = []

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def load(self, key: str, expected: tuple[str, ...] = SCORE_KEYS,
             length: int | None = None) -> dict[str, np.ndarray] | None:
        """The entry's arrays, or None when absent or damaged (then it is deleted and a note is kept).

        expected: array names that must be present (no others); length: the number of rows each must have.
        """
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except _UNREADABLE as exc:
            return self._damaged(path, f"unreadable: {type(exc).__name__}")
        problem = _entry_problem(arrays, expected, length)
        return self._damaged(path, problem) if problem else arrays

    def _damaged(self, path: Path, why: str) -> None:
        self.notes.append(f"score cache entry {path} was damaged ({why}); ignored it and rescored")
        path.unlink(missing_ok=True)
        return None

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Write atomically; a full disk is a UserError naming the cache folder and --cache-dir."""
        self._ensure_dir()
        path = self._path(key)
        with atomic_path(path) as tmp:
            try:
                with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare temp name
                    np.savez(f, **arrays)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise UserError(f"the score cache {self.dir} ran out of space while writing {path.name}; free "
                                    "space there or pass --cache-dir with a folder on another disk (scores finished "
                                    "before this are kept)") from None
                raise

    def _ensure_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UserError(f"cannot use {self.dir.parent} as the score cache: a file is in the way; pass --cache-dir "
                            "a folder path") from None
        except OSError as exc:
            raise UserError(f"cannot create the score cache {self.dir}: {exc.strerror or exc}; pass --cache-dir a "
                            "writable folder") from None


def pack(arrays: dict[str, np.ndarray]) -> bytes:
    """A score entry as the bytes of its `.npz` file (sent between ranks; see engine.distributed.share_hit)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack(data: bytes) -> dict[str, np.ndarray]:
    """`pack`'s inverse; never unpickles."""
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _entry_problem(arrays: dict[str, np.ndarray], expected: tuple[str, ...], length: int | None) -> str | None:
    """Why an entry cannot be used, or None: the expected names, numeric 1-D arrays, one common length."""
    if expected and set(arrays) != set(expected):
        missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
        return f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}"
    lengths = set()
    for name, a in arrays.items():
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.number):
            return f"{name} is {a.dtype} with shape {list(a.shape)}, expected a 1-D numeric array"
        lengths.add(len(a))
    if len(lengths) > 1:
        return f"arrays of different lengths {sorted(lengths)}"
    if length is not None and lengths and lengths != {length}:
        return f"{lengths.pop()} rows, expected {length}"
    return None
