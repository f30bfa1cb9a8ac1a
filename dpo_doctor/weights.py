"""Reading model weights and their folders without running anything: formats, safetensors headers, digests,
configs, and pickles walked without being executed.

The one home of what discovery (which folders are checkpoints) and the engine (loading them) both need to know about
a model folder's files: which format it is (`model_kind`), which files hold its weights (`weight_files`), whether a
safetensors file is whole (`read_safetensors_header`), a content digest for the cache (`files_digest`), JSON configs
checked before any loader sees them (`read_json`, `read_adapter_config`), the ZeRO file listing, and `read_pickle_inert`
(pickled settings such as TRL's training_args.bin read as inert records: nothing named in the pickle is imported or
called). No torch at import time.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import pickle
import struct
import zipfile
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


def read_pickle_inert(path: Path):
    """The object a pickle file describes, as plain values and InertGlobal records; nothing in it imported or run.

    Reads the three shapes a `.bin` of settings comes in: a torch.save zip (`<name>/data.pkl`), torch.save's legacy
    format (four pickles in a row; the object is the fourth), and a bare pickle. ValueError with the reason when the
    bytes are none of these (the caller decides whether that is an error).
    """
    size = path.stat().st_size
    if size > PICKLE_LIMIT:
        raise ValueError(f"{size} bytes, more than a settings pickle holds ({PICKLE_LIMIT} bytes at most)")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [i for i in z.infolist() if i.filename.endswith("data.pkl")]
            if not names or names[0].file_size > PICKLE_LIMIT:
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
