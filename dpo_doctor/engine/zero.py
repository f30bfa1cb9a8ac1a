"""DeepSpeed ZeRO checkpoints (`global_stepN/`) consolidated once into a float32 safetensors model in the cache.

OpenRLHF and the HF Trainer (ZeRO-3 without `stage3_gather_16bit_weights_on_model_save`) leave the trained weights
only in DeepSpeed's files: `*_model_states.pt` (parameter names and shapes, buffers, frozen parameters) and one
`*_optim_states.pt` per data-parallel rank holding that rank's slice of the float32 master weights. This module
re-implements the consolidation of DeepSpeed's `zero_to_fp32.py` (the run's own copy is never executed):

- ZeRO-1/2: `optimizer_state_dict.single_partition_of_fp32_groups[g]` per rank; concatenated over ranks, param
  group g is the flat float32 vector of the parameters of `param_shapes[g]` in order (plus alignment padding at
  the end, to a multiple of 2 x world size).
- ZeRO-3: `optimizer_state_dict.fp32_flat_groups` per rank; every parameter (in `param_shapes` order, groups
  merged) owns ceil(numel / world) consecutive values in each rank's flat vector; rank r's piece comes r-th and
  the last rank's is zero-padded.

The .pt files are pickles. They are read only under --trust-pickles (discovery makes no "zero" spec without it),
and only with `torch.load(weights_only=True)`, never `weights_only=False`. Reading DeepSpeed's files that way needs
this allow-list (found on files written by DeepSpeed 0.19.8, ZeRO-2 and ZeRO-3, fp32 and bf16; older releases
write the same classes):

    deepspeed.runtime.zero.config.ZeroStageEnum         -> int (the stage number; the enum is an IntEnum)
    deepspeed.runtime.fp16.loss_scaler.LossScaler       -> _Inert (a placeholder; its state is dropped)
    deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler -> _Inert (fp16 runs)
    deepspeed.utils.tensor_fragment.fragment_address    -> _Inert (ZeRO-2 param_slice_mappings)

No DeepSpeed class is imported or built: each name maps to `int` or to `_Inert`, which does nothing, so these
files can carry nothing more than weights_only already allows. The model states need no extra global at all
(`ds_config` is a plain dict, `ds_version` a string). A file naming any other global is refused with its name.

The converted folder, `<cache>/zero/<key>/` (key: digest of the .pt files and config.json), holds model.safetensors,
the run's config.json and tokenizer files, and source.json saying where it came from; it is written under a
temporary name and renamed, so an interrupted conversion leaves nothing half-written. Memory: the optimizer files
are memory-mapped and the safetensors file is written tensor by tensor, so one parameter at a time is in RAM.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from dpo_doctor.discover import ModelSpec
from dpo_doctor.engine.staging import human_bytes, staged_folder
from dpo_doctor.errors import UserError
from dpo_doctor.weights import FULL_WEIGHTS, TOKENIZER_FILES, files_digest, read_json, zero_files

CONVERT_VERSION = "zero-v1"
ProgressFn = Callable[[str, int, int], None]  # (stage description, done, total)
NoteFn = Callable[[str], None]
_RANK = re.compile(r"zero_pp_rank_([0-9]+)_")
_MP_RANK = re.compile(r"mp_rank_([0-9]+)_")
_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
              torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
              torch.bool: "BOOL"}
_EXTRA_FILES = ("config.json", "generation_config.json", "special_tokens_map.json", "chat_template.jinja",
                *TOKENIZER_FILES)


class _Inert:
    """Placeholder for a DeepSpeed object the conversion never reads (loss scaler, fragment addresses): built
    empty, its pickled state dropped, no DeepSpeed code imported or run."""

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state) -> None:
        pass


SAFE_GLOBALS = [
    (int, "deepspeed.runtime.zero.config.ZeroStageEnum"),
    (_Inert, "deepspeed.runtime.fp16.loss_scaler.LossScaler"),
    (_Inert, "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler"),
    (_Inert, "deepspeed.utils.tensor_fragment.fragment_address"),
]


@dataclass(frozen=True)
class Plan:
    """What the consolidated state dict will hold, known before any optimizer file is read."""

    stage: int
    world: int
    shapes: dict[str, tuple[int, ...]]  # trainable parameters, in the flat order of the fp32 partitions
    group_sizes: list[int]  # ZeRO-1/2: parameters per param group (ZeRO-3 merges the groups)
    extra: dict[str, torch.Tensor]  # buffers and frozen parameters, whole
    shared: dict[str, str]  # alias -> parameter it shares storage with (tied weights)

    def tensors(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        out = {n: (s, torch.float32) for n, s in self.shapes.items()}
        out.update({n: (tuple(t.shape), t.dtype) for n, t in self.extra.items()})
        out.update({a: out[n] for a, n in self.shared.items() if n in out and a not in out})
        return out

    def nbytes(self) -> int:
        return sum(math.prod(s) * d.itemsize for s, d in self.tensors().values())


# ---- reading the pickles --------------------------------------------------------------------------------------

def load_pt(path: Path):
    """torch.load(weights_only=True) with the DeepSpeed allow-list, memory-mapped; a UserError naming the file.

    The pickle's globals are listed first (without unpickling): one outside the allow-list is named in the error.
    """
    try:
        unknown = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - {n for _, n in SAFE_GLOBALS})
    except Exception:  # not a zip checkpoint (legacy format) or unreadable: torch.load below says what is wrong
        unknown = []
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise UserError(f"{path} pickles {unknown[0]}{more}, which is not on dpo-doctor's allow-list for DeepSpeed "
                        "files (read with torch.load(weights_only=True) only), so it is not read; if you trust it, "
                        "convert the folder with the run's zero_to_fp32.py and scan the output")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, OSError) as exc:
        why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} could not be read with torch.load(weights_only=True) and dpo-doctor's DeepSpeed "
                        f"allow-list ({why}); if you trust it, convert the folder with the run's zero_to_fp32.py "
                        "and scan the output") from None


def _by_rank(files: list[Path]) -> list[Path]:
    """Files ordered by data-parallel rank; tensor/pipeline-parallel checkpoints (mp_rank_01...) are refused."""
    ranked = []
    for f in files:
        m, mp = _RANK.search(f.name), _MP_RANK.search(f.name)
        if mp and int(mp.group(1)) != 0:
            raise UserError(f"{f}: a tensor-parallel DeepSpeed checkpoint (mp_rank_{mp.group(1)}), which dpo-doctor "
                            "cannot consolidate; save the model with save_pretrained and scan that")
        ranked.append((int(m.group(1)) if m else 0, f))
    return [f for _, f in sorted(ranked)]


def _section(state, key: str, path: Path):
    if not isinstance(state, dict) or key not in state:
        raise UserError(f"{path} has no {key!r}: not a DeepSpeed ZeRO checkpoint file (or a copy cut short); "
                        "re-copy the global_stepN folder")
    return state[key]


def read_plan(folder: Path) -> tuple[Plan, list[Path]]:
    """Names, shapes, buffers and frozen parameters from the model-states file(s), and the optimizer files by rank.

    Reads only the small model-states pickles (under ZeRO-1/2 the rank-0 file also holds the 16-bit module, which
    stays memory-mapped and is not used: the float32 master weights are the exact trained values).
    """
    models = _by_rank(sorted(folder.glob("*_model_states.pt")))
    optims = _by_rank(sorted(folder.glob("*_optim_states.pt")))
    if not models or not optims:
        raise UserError(f"{folder} is not a complete DeepSpeed ZeRO checkpoint (expected *_model_states.pt and "
                        "*_optim_states.pt files); re-copy it")
    states = [load_pt(f) for f in models]
    first = states[0]
    groups = _section(first, "param_shapes", models[0])
    if not isinstance(groups, list) or not groups:
        raise UserError(f"{models[0]} has no param_shapes: saved without a ZeRO optimizer, so there are no "
                        "partitioned weights to consolidate; save the model with save_pretrained and scan that")
    shapes = {}
    for group in groups:
        shapes.update({str(n): tuple(int(d) for d in s) for n, s in group.items()})
    module = _section(first, "module", models[0])
    buffer_names = set(first.get("buffer_names") or ())
    extra = {n: (t.float() if t.is_floating_point() else t) for n, t in module.items() if n in buffer_names}
    stage = 3 if len(models) > 1 or "zero_pp_rank" in models[0].name else 2
    extra.update(_frozen(states, stage, len(optims)))
    shared = {str(a): str(n) for a, n in (first.get("shared_params") or {}).items()}
    plan = Plan(stage=stage, world=len(optims), shapes=shapes, group_sizes=[len(g) for g in groups], extra=extra,
                shared=shared)
    return plan, optims


def _frozen(states: list[dict], stage: int, world: int) -> dict[str, torch.Tensor]:
    """Parameters with requires_grad=False: whole under ZeRO-1/2, one padded piece per rank under ZeRO-3."""
    shapes = states[0].get("frozen_param_shapes") or {}
    out = {}
    for name, shape in shapes.items():
        numel = math.prod(shape)
        pieces = [s["frozen_param_fragments"][name] for s in (states[:1] if stage < 3 else states)]
        out[name] = torch.cat([p.reshape(-1) for p in pieces])[:numel].reshape(tuple(shape)).float()
    return out


def read_partitions(plan: Plan, optims: list[Path]) -> list[list[torch.Tensor]]:
    """Per rank, the flat float32 partitions of each param group (memory-mapped), checked against the plan."""
    key = "fp32_flat_groups" if plan.stage == 3 else "single_partition_of_fp32_groups"
    parts, stage = [], None
    for f in optims:
        opt = _section(load_pt(f), "optimizer_state_dict", f)
        stage = int(_section(opt, "zero_stage", f)) if stage is None else stage
        count = opt.get("partition_count")
        count = max(count) if isinstance(count, list) else count
        if isinstance(count, int) and count != len(optims):
            raise UserError(f"{f.parent} has {len(optims)} optimizer-state files but was saved by {count} ranks "
                            "(an overwritten or incomplete checkpoint); re-copy the whole global_stepN folder")
        parts.append([t.reshape(-1) for t in _section(opt, key, f)])
    if (stage == 3) != (plan.stage == 3):
        raise UserError(f"{optims[0].parent}: the model-states files are laid out for ZeRO-{plan.stage} but the "
                        f"optimizer says ZeRO-{stage}; re-copy the folder")
    return parts


# ---- consolidation (the inverse of how ZeRO partitions) -------------------------------------------------------

def _take(pieces: list[torch.Tensor], start: int, length: int) -> torch.Tensor:
    """`length` values from position `start` of the concatenation of 1-D `pieces`, without concatenating them."""
    out, pos = [], 0
    for p in pieces:
        lo, hi = max(start, pos), min(start + length, pos + p.numel())
        if lo < hi:
            out.append(p[lo - pos:hi - pos])
        pos += p.numel()
    got = sum(t.numel() for t in out)
    if got != length:
        raise UserError(f"the ZeRO partitions hold {pos} values but parameter data was expected at {start}..."
                        f"{start + length}; the checkpoint does not match its param_shapes: re-copy it")
    return torch.cat(out) if len(out) > 1 else out[0]


def trainable(plan: Plan, parts: list[list[torch.Tensor]]):
    """(name, float32 tensor) of every trainable parameter, one at a time."""
    if plan.stage == 3:
        yield from _zero3(plan, parts)
    else:
        yield from _zero2(plan, parts)


def _zero2(plan: Plan, parts):
    names = list(plan.shapes)
    first = 0
    for g, size in enumerate(plan.group_sizes):
        pieces = [rank[g] for rank in parts]  # (numel_r,) per rank; rank order = position in the group's flat vector
        offset = 0
        for name in names[first:first + size]:
            numel = math.prod(plan.shapes[name])
            yield name, _take(pieces, offset, numel).reshape(plan.shapes[name])
            offset += numel
        first += size
        avail, align = sum(p.numel() for p in pieces), 2 * plan.world  # DeepSpeed pads each group to 2 x world
        if math.ceil(offset / align) != math.ceil(avail / align):
            raise UserError(f"ZeRO-2 group {g} holds {avail} values but its parameters need {offset}; the optimizer "
                            "files do not belong to these model states: re-copy the global_stepN folder")


def _zero3(plan: Plan, parts):
    world = plan.world
    avail = sum(p.numel() for p in parts[0]) * world
    offset = 0
    for name, shape in plan.shapes.items():
        numel = math.prod(shape)
        per_rank = math.ceil(numel / world)  # each rank holds this many values of the parameter, the last zero-padded
        whole = torch.cat([_take(rank, offset, per_rank) for rank in parts])  # (world * per_rank,)
        yield name, whole[:numel].reshape(shape)
        offset += per_rank
    if offset * world != avail:
        raise UserError(f"the ZeRO-3 partitions hold {avail} values but the parameters need {offset * world}; the "
                        "optimizer files do not belong to these model states: re-copy the global_stepN folder")


def state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """The consolidated state dict in memory (tests and small models; `convert` streams instead)."""
    plan, optims = read_plan(folder)
    out = dict(trainable(plan, read_partitions(plan, optims)))
    out.update(plan.extra)
    out.update({a: out[n] for a, n in plan.shared.items() if n in out and a not in out})
    return out


# ---- writing safetensors, tensor by tensor --------------------------------------------------------------------

def _tensors(plan: Plan, parts):
    """Trainable parameters, then buffers and frozen parameters, then tied aliases (their own copy of the bytes)."""
    sources = set(plan.shared.values())
    kept = {n: t for n, t in plan.extra.items() if n in sources}
    for name, t in trainable(plan, parts):
        if name in sources:
            kept[name] = t
        yield name, t
    yield from plan.extra.items()
    for alias, name in plan.shared.items():
        if alias not in plan.shapes and alias not in plan.extra and name in kept:
            yield alias, kept[name]


def write_safetensors(path: Path, plan: Plan, parts, progress: ProgressFn | None = None, label: str = "") -> None:
    """A safetensors file whose header comes from the plan, then each tensor's bytes as it is consolidated."""
    header, offset = {}, 0
    tensors = plan.tensors()
    for name, (shape, dtype) in tensors.items():
        size = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    written = {}
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for i, (name, t) in enumerate(_tensors(plan, parts)):
            shape, dtype = tensors[name]
            t = t.to(dtype).contiguous()
            if tuple(t.shape) != shape:
                raise UserError(f"{name}: consolidated shape {list(t.shape)} differs from param_shapes {list(shape)}")
            f.write(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            written[name] = True
            if progress:
                progress(label, i + 1, len(tensors))
    missing = [n for n in tensors if n not in written]
    if missing or path.stat().st_size != 8 + len(raw) + offset:
        raise UserError(f"{path}: conversion incomplete ({len(missing)} tensors missing, e.g. {missing[:1]})")


# ---- the cache ------------------------------------------------------------------------------------------------

def conversion_key(spec: ModelSpec) -> str:
    """Identity of a conversion: the .pt files' digests (weights.file_digest) and the config.json bytes."""
    h = hashlib.sha256(CONVERT_VERSION.encode())
    h.update(files_digest(zero_files(spec.path)).encode())
    h.update((Path(spec.base) / "config.json").read_bytes())
    return h.hexdigest()[:32]


def _stderr_note(text: str) -> None:
    print(f"dpo-doctor: {text}", file=sys.stderr, flush=True)


def materialize(spec: ModelSpec, cache_dir: Path | None = None, progress: ProgressFn | None = None,
                note: NoteFn | None = _stderr_note) -> ModelSpec:
    """The full-model spec of a "zero" spec's conversion, converting it first unless the cache already has it.

    Prints (through `note`) the size of what will be written before converting; `progress(label, done, total)`
    counts tensors written.
    """
    from dpo_doctor.cache import default_cache_dir

    if spec.kind != "zero" or not spec.pickled or spec.base is None:
        raise UserError(f"{spec.path}: a DeepSpeed ZeRO checkpoint is read only under --trust-pickles (its .pt files "
                        "are pickles); pass --trust-pickles if you trust this run")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = root / "zero" / conversion_key(spec)
    if (out / FULL_WEIGHTS).is_file() and (out / "config.json").is_file():
        return ModelSpec(path=out, kind="full", base=None)
    plan, optims = read_plan(spec.path)
    size = plan.nbytes()
    if note:
        note(f"{spec.path}: converting a DeepSpeed ZeRO-{plan.stage} checkpoint ({plan.world} ranks, "
             f"{len(plan.tensors())} tensors) to float32 safetensors once: writes {human_bytes(size)} to {out} "
             "(later scans reuse it)")
    _convert(spec, plan, optims, out, size, progress)
    return ModelSpec(path=out, kind="full", base=None)


def _convert(spec: ModelSpec, plan: Plan, optims: list[Path], out: Path, size: int,
             progress: ProgressFn | None) -> None:
    with staged_folder(spec.path, out, size, FULL_WEIGHTS) as tmp:
        write_safetensors(tmp / FULL_WEIGHTS, plan, read_partitions(plan, optims), progress,
                          f"converting {spec.path.name} (DeepSpeed ZeRO-{plan.stage})")
        for name in _EXTRA_FILES:
            if (Path(spec.base) / name).is_file():
                shutil.copyfile(Path(spec.base) / name, tmp / name)
        read_json(tmp / "config.json")
        (tmp / "source.json").write_text(json.dumps({"zero_folder": str(spec.path), "config_from": str(spec.base),
                                                     "stage": plan.stage, "world_size": plan.world,
                                                     "version": CONVERT_VERSION}, indent=1))
