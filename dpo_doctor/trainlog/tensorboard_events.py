"""TensorBoard event files (`events.out.tfevents.*`), as written by HF Trainer's TensorBoardCallback, OpenRLHF,
torch's SummaryWriter or tensorboardX.

Tags are tracker keys (`train/loss`, `eval/rewards/margins`, OpenRLHF's `train/chosen_reward`): see
`trackers.py` for the mapping. An event file is a TFRecord stream: per record a little-endian u64 length, a 4-byte
CRC, the serialized `Event` protobuf and another CRC. The framing is read here; the `Event` message is decoded with
the protobuf classes tensorboardX ships (protobuf + tensorboardX: two small wheels, about 0.4 MB; the `tensorboard`
package's copy of the same classes is used instead when it is installed). Scalars come as `simple_value` (torch,
tensorboardX) or as a one-element float tensor (TF2 `tf.summary.scalar`); images, text and histograms are ignored.
A file cut off mid-record (a run still writing) ends the read there, with a warning.
"""

from __future__ import annotations

import struct
from pathlib import Path

from dpo_doctor.trainlog import trackers
from dpo_doctor.trainlog.table import MissingReader, Problems, Unreadable

PATTERN = "events.out.tfevents.*"
INSTALL = "pip install 'dpo-doctor[tensorboard]'"
FLOAT_DTYPES = {1: "<f", 2: "<d", 19: "<e"}  # DT_FLOAT, DT_DOUBLE, DT_HALF
MAX_DEPTH = 4  # how deep under the run folder to look (runs/<date_host>/ is 2)


def find(run_dir: Path) -> Path | None:
    """The folder holding the newest event file under `run_dir` (HF: runs/<date_host>/; OpenRLHF: <dir>/<name>/)."""
    files = [p for p in _walk(Path(run_dir), MAX_DEPTH) if p.is_file()]
    return max(files, key=lambda p: p.stat().st_mtime).parent if files else None


def _walk(folder: Path, depth: int):
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.match(PATTERN):
            yield entry
        elif depth > 0 and entry.is_dir() and not entry.name.startswith(("checkpoint-", "global_step", ".")):
            yield from _walk(entry, depth - 1)


def is_event_file(path: Path) -> bool:
    return Path(path).match(PATTERN)


def event_class():
    """The `Event` protobuf class: tensorboard's copy when installed (importing tensorboardX also imports torch,
    ~1 s), else tensorboardX's; MissingReader naming the pip command when neither is there."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
    except ImportError:
        try:
            from tensorboardX.proto.event_pb2 import Event
        except ImportError:
            raise MissingReader(f"reading TensorBoard event files needs tensorboardX: {INSTALL}") from None
    return Event


def read(path: Path, problems: Problems) -> list[dict]:
    """Raw rows from one event file, or from every event file of a folder (in name order: later files win)."""
    path = Path(path)
    files = sorted(path.glob(PATTERN)) if path.is_dir() else [path]
    if not files:
        raise Unreadable(f"{path} holds no {PATTERN} file")
    event = event_class()
    rows = []
    for file in files:
        rows += _rows(file, event, problems)
    return trackers.merge_rows(rows)


def _rows(file: Path, event_cls, problems: Problems) -> list[dict]:
    rows = []
    for raw in _records(file, problems):
        event = event_cls()
        try:
            event.ParseFromString(raw)
        except Exception:  # protobuf's DecodeError: a corrupt record
            problems.add("corrupt records", file.name)
            continue
        values = {v.tag: x for v in event.summary.value if (x := _scalar(v)) is not None}
        if values:
            rows += trackers.split_row(values, event.step)
    return rows


def _records(file: Path, problems: Problems):
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise Unreadable(f"cannot read {file}: {exc.strerror or exc}") from None
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            problems.add("cut-off records (file still being written?)", file.name)
            return
        (length,) = struct.unpack_from("<Q", data, pos)
        end = pos + 12 + length
        if end + 4 > len(data):
            problems.add("cut-off records (file still being written?)", file.name)
            return
        yield data[pos + 12:end]
        pos = end + 4


def _scalar(value) -> float | None:
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if not value.HasField("tensor"):
        return None
    tensor = value.tensor
    fmt = FLOAT_DTYPES.get(tensor.dtype)
    if fmt is None:
        return None
    if tensor.float_val:
        return float(tensor.float_val[0])
    if tensor.double_val:
        return float(tensor.double_val[0])
    if len(tensor.tensor_content) == struct.calcsize(fmt):
        return float(struct.unpack(fmt, tensor.tensor_content)[0])
    return None
