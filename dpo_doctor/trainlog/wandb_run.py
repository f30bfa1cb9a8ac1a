"""A local W&B run folder (`wandb/run-*/` or `wandb/offline-run-*/`): the history inside its `run-<id>.wandb` file.

The `.wandb` file is W&B's transaction log: a 7-byte header (`:W&B`, magic, version), then LevelDB-log framing
(32 KiB blocks; per chunk a 4-byte CRC, a u16 length and a type: full, first, middle, last) around serialized
`Record` protobufs. The framing is read here; the records are decoded with the wandb SDK's own protobuf classes
(`wandb.proto.wandb_internal_pb2`, in the `wandb` package: `pip install 'dpo-doctor[wandb]'`). `history` records hold
one logged dict each, values as JSON text; keys go through `trackers.py` (HF's `train/loss`, OpenRLHF's
`train/chosen_reward`; step from `train/global_step`, else W&B's `_step`).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from dpo_doctor.trainlog import trackers
from dpo_doctor.trainlog.table import MissingReader, Problems, Unreadable

INSTALL = "pip install 'dpo-doctor[wandb]'"
HEADER = b":W&B"
HEADER_LEN = 7
BLOCK = 32768
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
RUN_GLOBS = ("run-*", "offline-run-*")


def find(run_dir: Path) -> Path | None:
    """The newest W&B run folder under run_dir/wandb/ (or run_dir itself when it is one)."""
    run_dir = Path(run_dir)
    if _wandb_file(run_dir) is not None:
        return run_dir
    root = run_dir / "wandb"
    if not root.is_dir():
        return None
    runs = [d for g in RUN_GLOBS for d in root.glob(g) if d.is_dir() and _wandb_file(d) is not None]
    return max(runs, key=lambda d: d.name.rsplit("run-", 1)[-1]) if runs else None


def _wandb_file(folder: Path) -> Path | None:
    files = sorted(folder.glob("run-*.wandb")) if folder.is_dir() else []
    return files[-1] if files else None


def is_run(path: Path) -> bool:
    path = Path(path)
    return path.suffix == ".wandb" or (path.is_dir() and find(path) is not None)


def record_class():
    try:
        from wandb.proto.wandb_internal_pb2 import Record
    except ImportError:
        raise MissingReader(f"reading a W&B run folder needs the wandb package: {INSTALL}") from None
    return Record


def read(path: Path, problems: Problems) -> list[dict]:
    """Raw rows from a run folder (its newest run, when given the folder above) or a `.wandb` file."""
    path = Path(path)
    file = path if path.is_file() else _wandb_file(find(path) or path)
    if file is None:
        raise Unreadable(f"{path} holds no run-*.wandb file")
    record_cls = record_class()
    rows = []
    for raw in _records(file, problems):
        record = record_cls()
        try:
            record.ParseFromString(raw)
        except Exception:  # protobuf's DecodeError
            problems.add("corrupt records", file.name)
            continue
        if record.WhichOneof("record_type") == "history":
            rows += _history_rows(record.history, problems)
    return trackers.merge_rows(rows)


def _history_rows(history, problems: Problems) -> list[dict]:
    values = {}
    for item in history.item:
        key = ".".join(item.nested_key) if item.nested_key else item.key
        try:
            values[key] = json.loads(item.value_json)
        except (json.JSONDecodeError, RecursionError):
            problems.add("values that are not JSON", f"{key}: {item.value_json[:30]!r}")
    tracker_step = values.get("_step", history.step.num if history.HasField("step") else None)
    return trackers.split_row(values, tracker_step)


def _records(file: Path, problems: Problems):
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise Unreadable(f"cannot read {file}: {exc.strerror or exc}") from None
    if not data.startswith(HEADER):
        raise Unreadable(f"{file} does not start with the W&B header {HEADER!r}: not a .wandb run file")
    pos, pending = HEADER_LEN, b""
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        chunk = data[pos + CHUNK_HEADER:pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 0 or len(chunk) < length:
            break
        if kind in (FULL, FIRST):
            pending = b""
        pending += chunk
        if kind in (FULL, LAST):
            yield pending
            pending = b""
    if pos < len(data) and data[pos:].strip(b"\0"):
        problems.add("cut-off records (run still writing?)", file.name)
