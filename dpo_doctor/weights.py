"""Reading model weights and their folders without running anything: formats, safetensors headers, digests,
configs, and pickles walked without being executed.

The one home of what discovery (which folders are checkpoints) and the engine (loading them) both need to know about
a model folder's files: which format it is (`model_kind`), which files hold its weights (`weight_files`), whether a
safetensors file is whole (`read_safetensors_header`), a content digest for the cache (`files_digest`), JSON configs
checked before any loader sees them (`read_json`, `read_adapter_config`), the ZeRO file listing, `read_pickle_inert`
(pickled settings such as TRL's training_args.bin read as inert records: nothing named in the pickle is imported or
called), and the layout of FSDP sharded checkpoints (torch.distributed.checkpoint folders: `read_dcp_layout`). No torch.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dpo_doctor.errors import UserError

FULL_WEIGHTS = "model.safetensors"
FULL_INDEX = "model.safetensors.index.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLED_FULL = "pytorch_model.bin"
PICKLED_INDEX = "pytorch_model.bin.index.json"
PICKLED_WEIGHTS = (PICKLED_FULL, "adapter_model.bin", PICKLED_INDEX)
ADAPTER_KEYS = {"peft_type": (str,), "r": (int,), "lora_alpha": (int, float), "target_modules": (list, str)}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
_HASH_WHOLE_BELOW = 64 << 20  # adapters and tiny models: hash every byte
_SAMPLE = 4096  # bytes hashed at the start and end of every tensor in bigger files
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


# ---- safetensors files ----------------------------------------------------------------------------------------

def read_safetensors_header(path: Path) -> tuple[int, dict]:
    """(header length, header dict) of a safetensors file, checked against the file size.

    A safetensors file is 8 bytes (little-endian u64 N), N bytes of JSON, then the tensor bytes. A copy cut short
    shows up as N or a tensor's end offset beyond the file size; both give a UserError naming the file.
    """
    size = path.stat().st_size
    fix = "re-copy it or delete this checkpoint"
    if size < 8:
        raise UserError(f"{path} is truncated or corrupt (file has {size} bytes, less than the 8-byte header); {fix}")
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if 8 + n > size:
            raise UserError(f"{path} is truncated or corrupt (header says {n} bytes, file has {size}); {fix}")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path} is truncated or corrupt (its {n}-byte header is not valid JSON); {fix}") from None
    if not isinstance(header, dict):
        raise UserError(f"{path} is truncated or corrupt (its header is not a JSON object); {fix}")
    _check_offsets(path, header, 8 + n, size)
    return n, header


def _check_offsets(path: Path, header: dict, data_start: int, size: int) -> None:
    """Every tensor's [begin, end) must lie inside the file and match dtype x shape."""
    fix = "re-copy it or delete this checkpoint"
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            shape = [int(d) for d in info["shape"]]
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path} is corrupt (tensor {name!r} has no valid data_offsets/shape); {fix}") from None
        if not 0 <= begin <= end or data_start + end > size:
            raise UserError(f"{path} is truncated or corrupt (tensor {name!r} ends at byte {data_start + end}, "
                            f"file has {size}); {fix}")
        width = _DTYPE_BYTES.get(info.get("dtype"))
        if width is not None and _prod(shape) * width != end - begin:
            raise UserError(f"{path} is corrupt (tensor {name!r} holds {end - begin} bytes, its dtype and shape "
                            f"need {_prod(shape) * width}); {fix}")


def _prod(shape: list[int]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def weight_files(spec_path: Path, kind: str) -> list[Path]:
    """The safetensors files that make up a model folder (shards listed by the index, which must all exist)."""
    if kind == "adapter":
        return [spec_path / ADAPTER_WEIGHTS]
    if kind == "zero":
        return zero_files(spec_path)
    if kind == "fsdp":
        return dcp_files(spec_path / FSDP_DIR)
    index = spec_path / FULL_INDEX
    if not index.exists() and not (spec_path / FULL_WEIGHTS).exists():
        if (spec_path / PICKLED_INDEX).exists():
            index = spec_path / PICKLED_INDEX
        elif (spec_path / PICKLED_FULL).exists():
            return [spec_path / PICKLED_FULL]
    if not index.exists():
        return [spec_path / FULL_WEIGHTS]
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise UserError(f"{index} has no weight_map; re-copy it or delete this checkpoint")
    files = [spec_path / name for name in sorted(set(weight_map.values()))]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise UserError(f"{spec_path} is missing shard {missing[0]} listed in {FULL_INDEX} "
                        f"({len(missing)} of {len(files)} missing); re-copy the folder or delete this checkpoint")
    outside = [f.name for f in files if f.parent.resolve() != spec_path.resolve()]  # a Hub snapshot links to blobs/
    if outside:
        raise UserError(f"{index} lists shard {outside[0]} outside {spec_path}; re-copy the index file")
    return files


def file_digest(path: Path) -> str:
    """Cheap content identity of one safetensors file.

    Small files are hashed whole. Large ones: size, the JSON header, and the first/last 4 KiB of every tensor,
    so a change to any trained tensor changes the digest without reading gigabytes (an optimizer step moves
    every element of a tensor it updates). Memoized per (path, size, mtime) within a process: a scan asks for
    the same checkpoint's identity several times.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"{path} is missing; re-copy the checkpoint or delete it") from None
    return _digest(str(path.resolve()), st.st_size, st.st_mtime_ns, _HASH_WHOLE_BELOW)


@functools.lru_cache(maxsize=1024)
def _digest(path_str: str, size: int, mtime_ns: int, whole_below: int) -> str:
    path = Path(path_str)
    h = hashlib.sha256(f"{path.name}|{size}|".encode())
    with path.open("rb") as f:
        if size <= whole_below:
            h.update(f.read())
            return h.hexdigest()
        if path.suffix == DCP_SUFFIX:  # an FSDP shard: the first/last 4 KiB of every item the .metadata places in it
            for start, length in _dcp_ranges(path):
                for begin in {start, max(start, start + length - _SAMPLE)}:
                    f.seek(begin)
                    h.update(f.read(min(_SAMPLE, start + length - begin)))
            return h.hexdigest()
        if path.suffix != ".safetensors":  # a big pickled .bin (only under --trust-pickles): head and tail
            h.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read())
            return h.hexdigest()
        n, header = read_safetensors_header(path)
        f.seek(8)
        h.update(f.read(n))
        for name in sorted(k for k in header if k != "__metadata__"):
            begin, end = header[name]["data_offsets"]
            for start in {begin, max(begin, end - _SAMPLE)}:
                f.seek(8 + n + start)
                h.update(f.read(min(_SAMPLE, end - start)))
    return h.hexdigest()


def files_digest(files: list[Path]) -> str:
    """Digest of several weight files (a sharded model), order-independent of the listing."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        h.update(file_digest(f).encode())
    return h.hexdigest()


def has_tokenizer(path: Path) -> bool:
    """True when the folder holds tokenizer files (TRL saves the tokenizer next to each checkpoint)."""
    return any((Path(path) / name).exists() for name in TOKENIZER_FILES)


# ---- model folders --------------------------------------------------------------------------------------------

def read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        ended = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated")
        cut = "; the file ends early: cut off?" if ended else ""
        raise UserError(f"{path} is not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno}, char "
                        f"{exc.pos}{cut}); re-copy it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); re-copy it") from None
    except RecursionError:
        raise UserError(f"{path} is not a usable config: its JSON is nested too deeply to read; re-copy it or "
                        "re-save it with save_pretrained") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} should hold a JSON object; re-copy it")
    return data


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").exists() or (path / "adapter_config.json").exists()


def model_kind(path: Path, trust_pickles: bool = False) -> str:
    """"adapter" or "full" from the files present; UserError when the config has no safetensors weights.

    A full model saved only as pytorch_model.bin is "full" under --trust-pickles (loaded with
    torch.load(weights_only=True)); pickled adapters never are.
    """
    if (path / "adapter_config.json").exists() and (path / ADAPTER_WEIGHTS).exists():
        return "adapter"
    if (path / "config.json").exists() and ((path / FULL_WEIGHTS).exists() or (path / FULL_INDEX).exists()):
        return "full"
    if (path / "adapter_config.json").exists() and (path / "adapter_model.bin").exists():
        raise UserError(f"{path} holds only a pickled adapter (adapter_model.bin), which dpo-doctor never unpickles; "
                        "re-save it with save_pretrained(..., safe_serialization=True)")
    if pickled_full(path):
        if trust_pickles:
            return "full"
        raise UserError(f"{path} holds only pickled weights (pytorch_model.bin), which can run code when read; pass "
                        "--trust-pickles if you trust it (read with torch.load(weights_only=True)), or re-save it "
                        "with save_pretrained(..., safe_serialization=True)")
    if list(path.glob("model-*-of-*.safetensors")):
        raise UserError(f"{path} has weight shards but no {FULL_INDEX}; re-copy the index file")
    wanted = ADAPTER_WEIGHTS if (path / "adapter_config.json").exists() else f"{FULL_WEIGHTS} (or shards + index)"
    raise UserError(f"{path} has a config but no weights: expected {wanted}; re-copy it or delete this checkpoint")


def pickled_full(path: Path) -> bool:
    return (path / "config.json").exists() and ((path / PICKLED_FULL).exists() or (path / PICKLED_INDEX).exists())


def read_adapter_config(adapter_dir: Path) -> dict:
    """adapter_config.json checked before PEFT sees it: valid JSON, and a LoRA's keys present with the right types."""
    path = adapter_dir / "adapter_config.json"
    cfg = read_json(path)
    wanted = ADAPTER_KEYS if cfg.get("peft_type", "LORA") == "LORA" else {"peft_type": (str,)}
    for key, types in wanted.items():
        if key not in cfg:
            raise UserError(f"{path} has no {key!r} key; re-save the adapter with PEFT's save_pretrained or re-copy it")
        value = cfg[key]
        bad = isinstance(value, bool) or not isinstance(value, types)
        if not bad and key == "target_modules" and isinstance(value, list):
            bad = not value or not all(isinstance(v, str) and v for v in value)
        if not bad and key in ("r", "lora_alpha"):
            bad = value <= 0
        if bad:
            need = {"peft_type": 'a string like "LORA"', "r": "a positive integer", "lora_alpha": "a positive number",
                    "target_modules": "a list of module names or a regex string"}[key]
            raise UserError(f"{path}: {key} is {json.dumps(value)}, expected {need}; fix the file or re-save the "
                            "adapter")
    return cfg


def has_weights(path: Path) -> bool:
    names = (FULL_WEIGHTS, FULL_INDEX, ADAPTER_WEIGHTS, *PICKLED_WEIGHTS)
    return any((path / n).exists() for n in names) or any(path.glob("model-*-of-*.safetensors"))


def zero_files(folder: Path) -> list[Path]:
    """The pickled .pt files of a ZeRO checkpoint folder: model states, then one optimizer-state file per rank."""
    return sorted(folder.glob("*_model_states.pt")) + sorted(folder.glob("*_optim_states.pt"))


def is_zero_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*_model_states.pt")) and any(path.glob("*_optim_states.pt"))


# ---- pickles, walked without being executed -------------------------------------------------------------------

PICKLE_LIMIT = 16 << 20  # a training_args.bin is a few KiB; nothing this reader is for comes near this
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's non-zip format: magic, protocol, sys_info, object, keys


class InertGlobal:
    """A class or function a pickle names (`module.qualname`), never imported.

    `find_class` hands the unpickler a fresh subclass per name; what the pickle does with it (REDUCE calls it,
    NEWOBJ calls its `__new__`, BUILD hands it state, SETITEMS/APPENDS fill it) only records the arguments on an
    instance. Nothing the pickle names is imported or called, so the bytes can describe any object and still run
    nothing: the result is a tree of records holding plain values.
    """

    module = ""
    qualname = ""

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items = list(args), dict(kwargs), None, []
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state) -> None:
        self.state = state

    def __setitem__(self, key, value) -> None:
        self.items.append((key, value))

    def append(self, value) -> None:
        self.items.append(value)

    def extend(self, values) -> None:
        self.items.extend(values)

    def fields(self) -> dict:
        """The object's attributes as far as the pickle carries them: BUILD's state dict (dataclasses, SimpleNamespace,
        TrainingArguments), else the items of a dict subclass."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):  # (dict state, slots state)
            state = {**(state[0] or {}), **state[1]}
        if isinstance(state, dict):
            return {k: v for k, v in state.items() if isinstance(k, str)}
        return {k: v for k, v in (i for i in self.items if isinstance(i, tuple) and len(i) == 2) if isinstance(k, str)}

    def __repr__(self) -> str:
        return f"<inert {self.module}.{self.qualname}>"


class _InertUnpickler(pickle.Unpickler):
    """Every global an InertGlobal subclass, every persistent id (a torch storage) None: the two hooks through which a
    pickle reaches code or data outside itself."""

    def find_class(self, module, name):
        return type(str(name)[:100] or "_", (InertGlobal,), {"module": str(module), "qualname": str(name)})

    def persistent_load(self, pid):
        return None  # a tensor's storage: never loaded


def read_pickle_inert(path: Path, limit: int = PICKLE_LIMIT):
    """The object a pickle file describes, as plain values and InertGlobal records; nothing in it imported or run.

    Reads the three shapes a `.bin` of settings comes in: a torch.save zip (`<name>/data.pkl`), torch.save's legacy
    format (four pickles in a row; the object is the fourth), and a bare pickle. ValueError with the reason when the
    bytes are none of these (the caller decides whether that is an error).
    """
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{size} bytes, more than this pickle should hold ({limit} bytes at most)")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [i for i in z.infolist() if i.filename.endswith("data.pkl")]
            if not names or names[0].file_size > limit:
                raise ValueError("a zip without a data.pkl of a sensible size: not a torch.save file")
            raw = z.read(names[0])
        return _load_one(io.BytesIO(raw))
    stream = io.BytesIO(path.read_bytes())
    first = _load_one(stream)
    if first != _TORCH_LEGACY_MAGIC:
        return first
    for _ in range(2):  # protocol version, sys_info
        _load_one(stream)
    return _load_one(stream)


def _load_one(stream):
    try:
        return _InertUnpickler(stream).load()
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            MemoryError, OverflowError, struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"not a readable pickle ({type(exc).__name__}: {str(exc)[:120]})") from None


def plain(value, depth: int = 0):
    """JSON-safe copy of a value read by read_pickle_inert: an enum record becomes its value (`IntervalStrategy('steps')`
    -> "steps"), tuples become lists, other records their class name; depth-limited."""
    if depth > 20:
        return None
    if isinstance(value, InertGlobal):
        if len(value.args) == 1 and isinstance(value.args[0], (str, int, float, bool)):
            return value.args[0]
        return f"{value.module}.{value.qualname}"
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)[:200]


# ---- FSDP sharded checkpoints (torch.distributed.checkpoint), read without unpickling code ---------------------
#
# accelerate's save_fsdp_model (fsdp_state_dict_type SHARDED_STATE_DICT; the HF Trainer calls it at every save) writes
# `checkpoint-N/pytorch_model_fsdp_0/` with torch.distributed.checkpoint (DCP): `dcp.save({"model": state_dict})`.
# The folder holds `.metadata`, a plain pickle of DCP's `Metadata` dataclass, and one `__<rank>_<i>.distcp` file per
# writer. Metadata (torch/distributed/checkpoint/metadata.py, filesystem.py):
#   state_dict_metadata: {fqn: TensorStorageMetadata(properties=TensorProperties(dtype, ...), size, chunks=[
#                         ChunkStorageMetadata(offsets, sizes)])}   (fqn "model.<name>": the {"model": ...} key)
#   planner_data:        {fqn: ("model", "<name>")}   the state dict path each flattened fqn came from
#   storage_data:        {MetadataIndex(fqn, offset=chunk offsets, index): _StorageInfo(relative_path, offset, length)}
# Each chunk's byte range holds one `torch.save(chunk_tensor)` zip. Here (no torch): `.metadata` walked with
# read_pickle_inert (every class an inert record) into a checked layout. engine/fsdp.py decodes each chunk with
# torch.load(weights_only=True), which builds tensors and plain containers only, and assembles the full tensors.

FSDP_DIR = "pytorch_model_fsdp_0"  # accelerate's f"{FSDP_MODEL_NAME}_{model_index}" for the (first) model
DCP_METADATA = ".metadata"
DCP_SUFFIX = ".distcp"
DCP_METADATA_LIMIT = 256 << 20  # a 70B model on hundreds of ranks has a few MB of metadata
_DCP_FIX = ("re-save it with fsdp_state_dict_type FULL_STATE_DICT, or if you trust the files merge them with "
            "`accelerate merge-weights {folder} OUT` and scan OUT")
_DCP_DTYPES = {"float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"}


@dataclass(frozen=True)
class DcpChunk:
    """One stored piece of a tensor: where it sits in the full tensor and which bytes of which file hold it."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    file: str  # relative to the DCP folder
    start: int
    length: int


@dataclass(frozen=True)
class DcpTensor:
    name: str  # the state-dict key with DCP's "model." prefix removed (what save_pretrained would call it)
    dtype: str  # torch dtype name, e.g. "bfloat16"
    shape: tuple[int, ...]
    chunks: tuple[DcpChunk, ...]


def fsdp_dir(path: Path) -> Path | None:
    """The DCP folder of a checkpoint saved with FSDP's SHARDED_STATE_DICT, or None."""
    folder = Path(path) / FSDP_DIR
    return folder if (folder / DCP_METADATA).is_file() else None


def dcp_files(folder: Path) -> list[Path]:
    """.metadata and the .distcp shard files of a DCP folder."""
    return [folder / DCP_METADATA, *sorted(folder.glob(f"*{DCP_SUFFIX}"))]


def dcp_error(folder: Path, what: str, recopy: bool = False) -> UserError:
    """recopy: the files are incomplete (a copy cut short), so only a whole copy helps."""
    fix = "re-copy the whole folder from where it was saved" if recopy else _DCP_FIX.format(folder=folder)
    return UserError(f"{folder} (FSDP sharded checkpoint) {what}; {fix}")


def _record(value, qualname: str, folder: Path) -> dict:
    """The fields of an inert record of DCP class `qualname` (UserError when the pickle holds something else)."""
    if not isinstance(value, InertGlobal) or value.qualname != qualname:
        raise dcp_error(folder, f"has a .metadata that is not torch.distributed.checkpoint's (expected {qualname}, "
                        f"found {type(value).__name__ if not isinstance(value, InertGlobal) else value!r})")
    return value.fields()


def _ints(value, what: str, folder: Path) -> tuple[int, ...]:
    """A torch.Size record (REDUCE of torch.Size with one tuple) or a plain list/tuple of ints."""
    if isinstance(value, InertGlobal) and value.qualname == "Size" and len(value.args) == 1:
        value = value.args[0]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                       for v in value):
        raise dcp_error(folder, f"has a .metadata whose {what} is not a list of sizes")
    return tuple(value)


def _dtype_name(props, fqn: str, folder: Path) -> str:
    """TensorProperties pickles its state as (dtype, layout, requires_grad, memory_format, pin_memory); the dtype is a
    global `torch.<name>`, which the inert reader hands back as a class named after it (never imported)."""
    state = props.state if isinstance(props, InertGlobal) and props.qualname == "TensorProperties" else None
    if isinstance(state, tuple) and state:
        dtype = state[0]
    elif isinstance(state, dict):
        dtype = state.get("dtype")
    else:
        raise dcp_error(folder, f"has no dtype for tensor {fqn!r} in its .metadata")
    if not (isinstance(dtype, type) and issubclass(dtype, InertGlobal) and dtype.module == "torch"
            and dtype.qualname in _DCP_DTYPES):
        name = f"{dtype.module}.{dtype.qualname}" if isinstance(dtype, type) and issubclass(dtype, InertGlobal) \
            else repr(dtype)[:60]
        raise dcp_error(folder, f"stores tensor {fqn!r} as {name}, which dpo-doctor does not read")
    return dtype.qualname


def _strip_prefix(fqn: str, path) -> str:
    """accelerate saves {"model": state_dict}: DCP's flattened key "model.<name>" came from the path ("model", name)."""
    if isinstance(path, (list, tuple)) and len(path) >= 2 and path[0] == "model" and all(
            isinstance(p, (str, int)) for p in path):
        return ".".join(str(p) for p in path[1:])
    return fqn.removeprefix("model.")


def read_dcp_layout(folder: Path) -> list[DcpTensor]:
    """Every tensor of a DCP folder: name, dtype, shape and chunk byte ranges, checked against the files on disk.

    Reads only `.metadata`, with read_pickle_inert: nothing it names is imported or run. UserError naming the folder
    for anything but tensors (DCP's pickled "bytes" items), compressed items, a missing shard file, or a byte range
    past a file's end (a copy cut short).
    """
    folder = Path(folder)
    meta_path = folder / DCP_METADATA
    try:
        meta = read_pickle_inert(meta_path, DCP_METADATA_LIMIT)
    except (ValueError, OSError) as exc:
        raise dcp_error(folder, f"has an unreadable {DCP_METADATA} ({exc})") from None
    fields = _record(meta, "Metadata", folder)
    items, planner, storage = (fields.get(k) for k in ("state_dict_metadata", "planner_data", "storage_data"))
    if not isinstance(items, dict) or not isinstance(storage, dict) or not items:
        raise dcp_error(folder, f"has a {DCP_METADATA} without tensors or storage entries")
    places = _storage_places(storage, folder)
    out = []
    for fqn, item in items.items():
        if isinstance(item, InertGlobal) and item.qualname == "BytesStorageMetadata":
            raise dcp_error(folder, f"holds {fqn!r} as a pickled object, not a tensor (dpo-doctor unpickles nothing)")
        info = _record(item, "TensorStorageMetadata", folder)
        chunks = []
        for c in info.get("chunks") or []:
            cf = _record(c, "ChunkStorageMetadata", folder)
            offsets, sizes = _ints(cf.get("offsets"), f"chunk offsets of {fqn!r}", folder), \
                _ints(cf.get("sizes"), f"chunk sizes of {fqn!r}", folder)
            place = places.get((fqn, offsets))
            if place is None:
                raise dcp_error(folder, f"has no stored bytes for chunk {list(offsets)} of {fqn!r}")
            chunks.append(DcpChunk(offsets, sizes, *place))
        name = _strip_prefix(str(fqn), (planner or {}).get(fqn) if isinstance(planner, dict) else None)
        out.append(DcpTensor(name, _dtype_name(info.get("properties"), fqn, folder),
                             _ints(info.get("size"), f"size of {fqn!r}", folder), tuple(chunks)))
    _check_ranges(folder, out)
    return out


def _storage_places(storage: dict, folder: Path) -> dict[tuple, tuple[str, int, int]]:
    """(fqn, chunk offsets) -> (relative file, start byte, length) from DCP's storage_data."""
    places = {}
    for index, info in storage.items():
        key, where = _record(index, "MetadataIndex", folder), _record(info, "_StorageInfo", folder)
        rel, start, length = where.get("relative_path"), where.get("offset"), where.get("length")
        if where.get("transform_descriptors"):
            raise dcp_error(folder, f"stores {key.get('fqn')!r} through stream transforms "
                            f"{where['transform_descriptors']} (e.g. compression), which dpo-doctor does not read")
        if not (isinstance(rel, str) and rel.endswith(DCP_SUFFIX) and "/" not in rel and "\\" not in rel
                and not rel.startswith(".") and isinstance(start, int) and isinstance(length, int)
                and start >= 0 and length >= 0):
            raise dcp_error(folder, f"has an invalid storage entry for {key.get('fqn')!r} ({rel!r}, {start!r}, "
                            f"{length!r})")
        offsets = _ints(key.get("offset"), f"storage offset of {key.get('fqn')!r}", folder)
        places[(key.get("fqn"), offsets)] = (rel, start, length)
    return places


def _check_ranges(folder: Path, tensors: list[DcpTensor]) -> None:
    sizes: dict[str, int] = {}
    for t in tensors:
        for c in t.chunks:
            if c.file not in sizes:
                path = folder / c.file
                if not path.is_file():
                    raise dcp_error(folder, f"is missing shard file {c.file} (listed in {DCP_METADATA} for "
                                    f"{t.name!r})", recopy=True)
                sizes[c.file] = path.stat().st_size
            if c.start + c.length > sizes[c.file]:
                raise dcp_error(folder, f"is truncated: {c.file} has {sizes[c.file]} bytes but {t.name!r} is stored "
                                f"up to byte {c.start + c.length}", recopy=True)


def _dcp_ranges(path: Path) -> list[tuple[int, int]]:
    """(start, length) of every item stored in one .distcp file, from its folder's .metadata."""
    meta = path.parent / DCP_METADATA
    st = meta.stat()
    return _dcp_ranges_by_file(str(path.parent), st.st_size, st.st_mtime_ns).get(path.name, [])


@functools.lru_cache(maxsize=64)
def _dcp_ranges_by_file(folder: str, size: int, mtime_ns: int) -> dict[str, list[tuple[int, int]]]:
    """One parse of a DCP folder's .metadata serves the digest of every shard file (memoized per size and mtime)."""
    out: dict[str, set] = {}
    for t in read_dcp_layout(Path(folder)):
        for c in t.chunks:
            out.setdefault(c.file, set()).add((c.start, c.length))
    return {f: sorted(r) for f, r in out.items()}
