"""FSDP sharded checkpoints (`checkpoint-N/pytorch_model_fsdp_0/`) converted once into a safetensors model in the cache.

accelerate's `save_fsdp_model` with `fsdp_state_dict_type: SHARDED_STATE_DICT` (what the HF Trainer calls at every
save) leaves the weights only as torch.distributed.checkpoint shards. They are read without running any pickle:
weights.read_dcp_layout walks `.metadata` as inert records, `read_dcp` here decodes each chunk with
`torch.load(weights_only=True)` and assembles the tensors, so unlike DeepSpeed's files they need no --trust-pickles.
`materialize` writes them into `<cache>/fsdp/<key>/` (key: digest of the shard files and the config), tensor by
tensor in the dtype the shards hold:

- full weights: model.safetensors + the config.json found for the checkpoint + tokenizer files (the checkpoint's,
  else the config folder's), loaded as a "full" model;
- LoRA weights (PEFT's adapter_only state dict): adapter_model.safetensors + adapter_config.json, loaded as an
  "adapter" on the checkpoint's base.

The folder is written under a temporary name and renamed, so an interrupted conversion leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from dpo_doctor.discover import ModelSpec
from dpo_doctor.engine.staging import human_bytes, staged_folder
from dpo_doctor.errors import UserError
from dpo_doctor.weights import (
    ADAPTER_WEIGHTS, DCP_METADATA, FSDP_DIR, FULL_WEIGHTS, TOKENIZER_FILES, DcpChunk, DcpTensor, dcp_error, dcp_files,
    files_digest, read_dcp_layout, read_json,
)

CONVERT_VERSION = "fsdp-v1"
_ST_DTYPES = {"float32": ("F32", 4), "float16": ("F16", 2), "bfloat16": ("BF16", 2), "float64": ("F64", 8),
              "int64": ("I64", 8), "int32": ("I32", 4), "int16": ("I16", 2), "int8": ("I8", 1), "uint8": ("U8", 1),
              "bool": ("BOOL", 1)}
_EXTRA_FILES = ("generation_config.json", "special_tokens_map.json", "chat_template.jinja", *TOKENIZER_FILES)


# ---- reading the shards -----------------------------------------------------------------------------------

def read_dcp(folder: Path, layout: list[DcpTensor] | None = None) -> Iterator[tuple[str, object]]:
    """(name, full CPU tensor) of every tensor of a DCP folder, one at a time, in the metadata's order."""
    folder = Path(folder)
    layout = read_dcp_layout(folder) if layout is None else layout
    handles: dict[str, object] = {}
    try:
        for t in layout:
            pieces = []
            for c in t.chunks:
                if c.file not in handles:
                    handles[c.file] = (folder / c.file).open("rb")
                f = handles[c.file]
                f.seek(c.start)
                pieces.append((c, _decode_chunk(f.read(c.length), t, c, folder)))
            yield t.name, assemble(t, pieces, folder)
    finally:
        for f in handles.values():
            f.close()


def dcp_state_dict(folder: Path) -> dict:
    """The whole state dict of a DCP folder in memory (small models and tests; the engine converts tensor by tensor)."""
    return dict(read_dcp(folder))


def _decode_chunk(blob: bytes, t: DcpTensor, c: DcpChunk, folder: Path):
    """A chunk's bytes -> tensor: DCP writes each chunk with torch.save, read back with torch.load(weights_only=True)."""
    where = f"{c.file} bytes {c.start}..{c.start + c.length} ({t.name!r} chunk {list(c.offsets)})"
    if len(blob) != c.length:
        raise dcp_error(folder, f"is truncated: {where} could not be read whole", recopy=True)
    if not blob.startswith(b"PK\x03\x04"):
        raise dcp_error(folder, f"stores {where} in a format other than torch.save (DCP's safetensors or a custom "
                        "writer), which dpo-doctor does not read")
    try:
        tensor = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refused it, or the zip is damaged: either way not usable
        why = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise dcp_error(folder, f"has an unreadable {where} (torch.load(weights_only=True): {why})") from None
    if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != c.sizes or str(tensor.dtype) != f"torch.{t.dtype}":
        got = f"{tuple(tensor.shape)} {tensor.dtype}" if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise dcp_error(folder, f"has {got} at {where}, but {DCP_METADATA} says {c.sizes} {t.dtype}")
    return tensor


def assemble(t: DcpTensor, pieces: list, folder: Path):
    """The full tensor from its chunks: each chunk is copied to [offsets, offsets + sizes) along every dimension.

    The chunks must tile the tensor exactly (every element written once), else the checkpoint is incomplete.
    """
    out = torch.empty(t.shape, dtype=getattr(torch, t.dtype))
    seen = torch.zeros(t.shape, dtype=torch.bool)
    for c, piece in pieces:
        if len(c.offsets) != len(t.shape) or len(c.sizes) != len(t.shape) or any(
                o + s > d for o, s, d in zip(c.offsets, c.sizes, t.shape)):
            raise dcp_error(folder, f"places a chunk of {t.name!r} at {list(c.offsets)} size {list(c.sizes)}, "
                            f"outside its shape {list(t.shape)}")
        index = tuple(slice(o, o + s) for o, s in zip(c.offsets, c.sizes))
        if bool(seen[index].any()):
            raise dcp_error(folder, f"stores overlapping chunks of {t.name!r} (at {list(c.offsets)})")
        out[index] = piece
        seen[index] = True
    if not bool(seen.all()):
        raise dcp_error(folder, f"stores only {int(seen.sum())} of {seen.numel()} elements of {t.name!r} (a shard "
                        "missing?)", recopy=True)
    return out


# ---- the cache ------------------------------------------------------------------------------------------------

def conversion_key(spec: ModelSpec) -> str:
    """Identity of a conversion: the shard files' digests (weights.file_digest) and the config's bytes."""
    h = hashlib.sha256(CONVERT_VERSION.encode())
    h.update(files_digest(dcp_files(spec.path / FSDP_DIR)).encode())
    h.update(_config_file(spec).read_bytes())
    return h.hexdigest()[:32]


def _config_file(spec: ModelSpec) -> Path:
    return Path(spec.config_dir) / ("adapter_config.json" if spec.fsdp_adapter else "config.json")


def materialize(spec: ModelSpec, cache_dir: Path | None = None, note=None) -> ModelSpec:
    """The "full" or "adapter" spec of an "fsdp" spec's conversion, converting it first unless the cache has it."""
    from dpo_doctor.cache import default_cache_dir

    if spec.kind != "fsdp" or spec.config_dir is None:
        raise UserError(f"{spec.path} is not an FSDP sharded checkpoint with a config; pass its checkpoint-N folder")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = root / "fsdp" / conversion_key(spec)
    weights = ADAPTER_WEIGHTS if spec.fsdp_adapter else FULL_WEIGHTS
    if not ((out / weights).is_file() and (out / _config_file(spec).name).is_file()):
        layout = read_dcp_layout(spec.path / FSDP_DIR)
        size = sum(math.prod(t.shape) * _ST_DTYPES[t.dtype][1] for t in layout)
        (note or _stderr_note)(f"{spec.path}: converting an FSDP sharded checkpoint ({len(layout)} tensors) to "
                               f"safetensors once: writes {human_bytes(size)} to {out} (later scans reuse it)")
        _convert(spec, layout, out, weights, size)
    if spec.fsdp_adapter:
        return ModelSpec(path=out, kind="adapter", base=spec.base)
    return ModelSpec(path=out, kind="full", base=None)


def _stderr_note(text: str) -> None:
    print(f"dpo-doctor: {text}", file=sys.stderr, flush=True)


def write_safetensors(path: Path, layout: list[DcpTensor], tensors) -> None:
    """A safetensors file whose header comes from the DCP layout, then each tensor's bytes as it is assembled."""
    header, offset = {}, 0
    for t in layout:
        code, width = _ST_DTYPES[t.dtype]
        size = math.prod(t.shape) * width
        header[t.name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    if len(header) != len(layout):
        raise UserError(f"{path.parent}: two FSDP tensors have the same name after removing the 'model.' prefix")
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for (name, tensor), t in zip(tensors, layout):
            if name != t.name:  # read_dcp yields in layout order; a mismatch is a bug, not bad input
                raise AssertionError(f"{name} != {t.name}")
            f.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # the raw bytes, any dtype
    if path.stat().st_size != 8 + len(raw) + offset:
        raise UserError(f"{path}: conversion incomplete ({path.stat().st_size} bytes written, "
                        f"{8 + len(raw) + offset} expected); check the cache folder")


def _convert(spec: ModelSpec, layout: list[DcpTensor], out: Path, weights: str, size: int) -> None:
    with staged_folder(spec.path, out, size, weights) as tmp:
        write_safetensors(tmp / weights, layout, read_dcp(spec.path / FSDP_DIR, layout))
        shutil.copyfile(_config_file(spec), tmp / _config_file(spec).name)
        for name in _EXTRA_FILES:
            for folder in (spec.path, Path(spec.config_dir)):
                if (folder / name).is_file():
                    shutil.copyfile(folder / name, tmp / name)
                    break
        read_json(tmp / _config_file(spec).name)
        (tmp / "source.json").write_text(json.dumps({"fsdp_checkpoint": str(spec.path), "config_from":
                                                     str(spec.config_dir), "version": CONVERT_VERSION}, indent=1))
