"""On-disk cache of per-pair scores, keyed by a fingerprint of everything that changes them.

Key = sha256(model weights identity, token ids of the pairs (covers data, tokenizer and truncation settings),
dtype, device kind, engine version). The reference is scored once per key; each checkpoint too. A partial result
(NaN = not yet scored) is saved on interrupt, so a re-run resumes. Files are `.npz` written atomically and read
with `allow_pickle=False`: nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

ENGINE_VERSION = "pairs-v1"


def default_cache_dir() -> Path:
    return Path(os.environ.get("DPO_DOCTOR_CACHE", Path.home() / ".cache" / "dpo-doctor"))


def score_key(model_fingerprint: str, pairs_fingerprint: str, dtype: str, device_kind: str) -> str:
    parts = (ENGINE_VERSION, model_fingerprint, pairs_fingerprint, dtype, device_kind)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


class ScoreCache:
    """`load(key)` -> dict of arrays or None; `save(key, arrays)` atomically. A corrupt entry counts as missing."""

    def __init__(self, root: Path):
        self.dir = Path(root) / "scores"

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError):
            return None

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self._path(key).with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, self._path(key))
