"""Find the checkpoints of a training run, the reference they are measured against, and the run's settings.

Reads only file names, JSON and safetensors headers (no torch at import time, nothing unpickled by default).
Layout handled (see shared reference 1.7): `checkpoint-N/` sub-folders and/or a final model at the root, or a
single model folder; full weights (`model.safetensors`, or shards + `model.safetensors.index.json`) and PEFT
LoRA folders (`adapter_config.json` + `adapter_model.safetensors`). The reference is `--ref`, else a `ref/`
sub-adapter saved by TRL when it re-trains an existing adapter, else the reference our built-in trainer recorded
in dpo_doctor_config.json, else (for a new LoRA) the adapters' base, since TRL's reference is then the base with
adapters disabled.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from dpo_doctor.errors import UserError, did_you_mean
from dpo_doctor.hub import fetch_command, offline_vars, parse_hub_id, resolve_model_path

CHECKPOINT_RE = re.compile(r"^checkpoint-([0-9]+)\Z")  # ASCII digits only: "checkpoint-\u0663" is no step 3
CHECKPOINT_LIKE = re.compile(r"^checkpoint[-_]")
FULL_WEIGHTS = "model.safetensors"
FULL_INDEX = "model.safetensors.index.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLED_FULL = "pytorch_model.bin"
PICKLED_INDEX = "pytorch_model.bin.index.json"
PICKLED_WEIGHTS = (PICKLED_FULL, "adapter_model.bin", PICKLED_INDEX)
ADAPTER_KEYS = {"peft_type": (str,), "r": (int,), "lora_alpha": (int, float), "target_modules": (list, str)}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
RUN_CONFIG = "dpo_doctor_config.json"  # written by our built-in trainer at the run root
TRAIN_CONFIG_KEYS = (
    "beta", "loss_type", "loss_weights", "label_smoothing", "ld_alpha", "rpo_alpha", "reference_free",
    "f_divergence_type", "use_weighting", "max_length", "max_prompt_length", "max_completion_length",
    "truncation_mode", "padding_free", "precompute_ref_log_probs", "sync_ref_model", "ref_model_mixup_alpha",
    "ref_model_sync_steps", "learning_rate", "num_train_epochs", "seed",
)
_HASH_WHOLE_BELOW = 64 << 20  # adapters and tiny models: hash every byte
_SAMPLE = 4096  # bytes hashed at the start and end of every tensor in bigger files
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class ModelSpec:
    """Anything loadable: a checkpoint or the reference.

    path: folder with config.json + safetensors, or adapter_config.json + adapter_model.safetensors.
    base: for adapters, the resolved base model (a local folder); None for full models.
    """

    path: Path
    kind: str  # "full" | "adapter" | "zero" (a DeepSpeed global_stepN/ folder; base = the folder with its config.json)
    base: Path | str | None
    adapter_name_hint: str | None = None
    pickled: bool = False  # weights are pytorch_model.bin: set only by discovery under --trust-pickles


@dataclass(frozen=True)
class Checkpoint:
    name: str  # "checkpoint-40", or "final" for a model at the run root
    step: int
    spec: ModelSpec


@dataclass(frozen=True)
class Run:
    name: str
    path: Path
    checkpoints: tuple[Checkpoint, ...]  # ordered by step
    reference: ModelSpec | None  # None: cannot be decided, the scan needs --ref
    reference_source: str  # "--ref" | "ref/ sub-adapter" | "run config" | "adapter base" | "none"
    train_config: dict
    warnings: tuple[str, ...]


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
    weight_map = _read_json(index).get("weight_map")
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


# ---- one model folder -----------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
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
    if _pickled_full(path):
        if trust_pickles:
            return "full"
        raise UserError(f"{path} holds only pickled weights (pytorch_model.bin), which can run code when read; pass "
                        "--trust-pickles if you trust it (read with torch.load(weights_only=True)), or re-save it "
                        "with save_pretrained(..., safe_serialization=True)")
    if list(path.glob("model-*-of-*.safetensors")):
        raise UserError(f"{path} has weight shards but no {FULL_INDEX}; re-copy the index file")
    wanted = ADAPTER_WEIGHTS if (path / "adapter_config.json").exists() else f"{FULL_WEIGHTS} (or shards + index)"
    raise UserError(f"{path} has a config but no weights: expected {wanted}; re-copy it or delete this checkpoint")


def _pickled_full(path: Path) -> bool:
    return (path / "config.json").exists() and ((path / PICKLED_FULL).exists() or (path / PICKLED_INDEX).exists())


def _named_base(adapter_dir: Path) -> Path | None:
    """The adapter's `base_model_name_or_path` when it exists here (as a path, or a Hub id already cached)."""
    name = _read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
    if not isinstance(name, str) or not name:
        return None
    candidate = Path(name).expanduser()
    try:  # a Hub id: its cached snapshot only, so a --ref given here still wins over a download
        cached = resolve_model_path(name, "base_model_name_or_path", local_only=True)
    except UserError:
        cached = candidate
    for path in (candidate, adapter_dir / candidate, cached):
        if path.is_dir() and (path / "config.json").exists():
            return path.resolve()
    return None


def resolve_base(adapter_dir: Path, base: Path | None, ref: ModelSpec | None) -> Path:
    """Base of an adapter: --base, else base_model_name_or_path if it exists here, else --ref if full."""
    if base is not None:
        base = resolve_model_path(base, "--base")
        _require_full(base, "--base")
        return base.resolve()
    named = _named_base(adapter_dir)
    if named is not None:
        return named
    if ref is not None and ref.kind == "full":
        return ref.path
    name = _read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
    hub_id = parse_hub_id(name) if isinstance(name, str) else None
    if hub_id is not None and not offline_vars():  # online, and nothing else to use: fetch the named base
        return resolve_model_path(name, f"base_model_name_or_path of {adapter_dir}").resolve()
    fetch = f", or fetch it with `{fetch_command(*hub_id)}`" if hub_id else ""
    raise UserError(f"adapter at {adapter_dir} names base {name} which does not exist here; pass --base PATH{fetch}")


def _require_full(path: Path, flag: str) -> None:
    if not path.exists():
        raise UserError(f"{flag} {path} does not exist; pass the folder of the base model")
    if model_kind(path) != "full":
        raise UserError(f"{flag} {path} is an adapter, not a full model; pass the base model's folder")


def model_spec(path: Path, base: Path | None, ref: ModelSpec | None, hint: str | None = None,
               trust_pickles: bool = False) -> ModelSpec:
    """A loadable model folder, its configs checked (valid JSON, an adapter's keys and types) before any loader."""
    kind = model_kind(path, trust_pickles)
    if kind == "adapter":
        read_adapter_config(path)
    else:
        _read_json(path / "config.json")
    resolved = resolve_base(path, base, ref) if kind == "adapter" else None
    return ModelSpec(path=path.resolve(), kind=kind, base=resolved, adapter_name_hint=hint,
                     pickled=kind == "full" and not (path / FULL_WEIGHTS).exists() and not (path / FULL_INDEX).exists())


def read_adapter_config(adapter_dir: Path) -> dict:
    """adapter_config.json checked before PEFT sees it: valid JSON, and a LoRA's keys present with the right types."""
    path = adapter_dir / "adapter_config.json"
    cfg = _read_json(path)
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


def model_type(spec: ModelSpec) -> str | None:
    """config.json's model_type (an adapter's: its base's); None when unknown."""
    folder = Path(spec.base) if spec.kind in ("adapter", "zero") and spec.base is not None else spec.path
    try:
        value = _read_json(Path(folder) / "config.json").get("model_type")
    except UserError:
        return None
    return value if isinstance(value, str) else None


# ---- a run ----------------------------------------------------------------------------------------------------

def _checkpoint_dirs(run_dir: Path) -> tuple[list[tuple[int, Path]], list[str]]:
    """`checkpoint-N` folders by N (ASCII digits). Skipped with a warning: a checkpoint-like name without a step
    number (checkpoint-final), and a folder with no config (DeepSpeed shards only) or a config but no weights."""
    found, warnings = [], []
    for child in sorted(run_dir.iterdir()):
        m = CHECKPOINT_RE.match(child.name)
        if not child.is_dir() or not (m or CHECKPOINT_LIKE.match(child.name)):
            continue
        if not m:
            warnings.append(f"{child.name} skipped: its name has no step number (expected checkpoint-<digits>, e.g. "
                            f"checkpoint-500); rename it, or scan it alone with dpo-doctor scan {child}")
        elif zero_tag(child) is not None and not _has_weights(child):
            continue  # DeepSpeed ZeRO only (HF Trainer without gathered weights): see _zero_checkpoints
        elif any(child.glob("pytorch_model_fsdp_*/.metadata")) and not _has_weights(child):
            warnings.append(f"{child.name} skipped: an FSDP sharded checkpoint (pytorch_model_fsdp_*/ .distcp files), "
                            "which dpo-doctor cannot read safely (its .metadata is a plain pickle); save with "
                            "fsdp_state_dict_type FULL_STATE_DICT or save_pretrained to scan it")
        elif not is_model_dir(child):
            warnings.append(f"{child} has no config.json or adapter_config.json (DeepSpeed/FSDP shards only?); "
                            "skipped. Convert it with zero_to_fp32.py or save_pretrained to scan it")
        elif not _has_weights(child):
            warnings.append(f"{child.name} skipped: it has a config but no weights ({FULL_WEIGHTS}, shards + index, "
                            f"{ADAPTER_WEIGHTS} or pytorch_model.bin); the save was interrupted? Re-copy it to scan it")
        else:
            found.append((int(m.group(1)), child))
    return sorted(found), warnings


def _has_weights(path: Path) -> bool:
    names = (FULL_WEIGHTS, FULL_INDEX, ADAPTER_WEIGHTS, *PICKLED_WEIGHTS)
    return any((path / n).exists() for n in names) or any(path.glob("model-*-of-*.safetensors"))


# ---- DeepSpeed ZeRO folders (OpenRLHF; HF Trainer without gathered weights); converted in engine/zero.py -------

ZERO_TAG_RE = re.compile(r"^global_step([0-9]+)\Z")


def zero_files(folder: Path) -> list[Path]:
    """The pickled .pt files of a ZeRO checkpoint folder: model states, then one optimizer-state file per rank."""
    return sorted(folder.glob("*_model_states.pt")) + sorted(folder.glob("*_optim_states.pt"))


def is_zero_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*_model_states.pt")) and any(path.glob("*_optim_states.pt"))


def _zero_tags(save_dir: Path) -> list[tuple[int, Path]]:
    """(step, global_stepN/ folder) of a DeepSpeed save dir, by step."""
    if not save_dir.is_dir():
        return []
    found = [(int(m.group(1)), d) for d in save_dir.iterdir() if (m := ZERO_TAG_RE.match(d.name)) and is_zero_folder(d)]
    return sorted(found)


def zero_tag(save_dir: Path) -> Path | None:
    """The global_stepN/ folder of a save dir: the one its `latest` file names, else the highest step."""
    latest = save_dir / "latest"
    try:
        name = latest.read_text(encoding="utf-8").strip() if latest.is_file() else ""
    except (OSError, UnicodeDecodeError):
        name = ""
    if name and "/" not in name and is_zero_folder(save_dir / name):
        return save_dir / name
    tags = _zero_tags(save_dir)
    return tags[-1][1] if tags else None


def _zero_checkpoints(run_dir: Path, base: Path | None, trust_pickles: bool) -> tuple[list[Checkpoint], list[str]]:
    """HF Trainer's checkpoint-N/ holding only config.json + global_stepN/, and every global_stepN/ of OpenRLHF's
    save dir (RUN_DIR, or a sub-folder such as ckpt/checkpoints_dpo/), or RUN_DIR itself as one global_stepN/.

    OpenRLHF's global_stepN_hf/ (--ckpt.save_hf) is the same weights as a model folder: used instead, no pickles.
    The .pt files are pickles: without --trust-pickles they are skipped with one warning naming the flag.
    """
    found, ckpts = [], []  # found: (name, step, tag folder, folders to look for config.json in)
    children = sorted(d for d in run_dir.iterdir() if d.is_dir())
    for d in children:
        m, tag = CHECKPOINT_RE.match(d.name), zero_tag(d)
        if m and tag is not None and not _has_weights(d):
            found.append((d.name, int(m.group(1)), tag, [d, run_dir]))
    for save_dir in [run_dir, *(d for d in children if not CHECKPOINT_LIKE.match(d.name))]:
        for step, tag in _zero_tags(save_dir):
            hf = save_dir / f"{tag.name}_hf"
            if is_model_dir(hf) and _has_weights(hf):
                ckpts.append(Checkpoint(hf.name, step, model_spec(hf, base, None, trust_pickles=trust_pickles)))
            else:
                found.append((tag.name, step, tag, [save_dir, save_dir.parent, run_dir]))
    m = ZERO_TAG_RE.match(run_dir.resolve().name)
    if m and is_zero_folder(run_dir):
        found.append((m.group(0), int(m.group(1)), run_dir, [run_dir.resolve().parent, run_dir.resolve().parents[1]]))
    if found and not trust_pickles:
        names = ", ".join(f[0] for f in found[:4]) + (f", ... ({len(found)} in all)" if len(found) > 4 else "")
        return ckpts, [f"DeepSpeed ZeRO checkpoint(s) {names} skipped: their .pt files are pickles that can run code "
                       "when read; pass --trust-pickles if you trust this run (read with torch.load(weights_only=True), "
                       "converted once to safetensors in the cache)"]
    for name, step, tag, where in found:
        spec = ModelSpec(path=tag.resolve(), kind="zero", base=_zero_config_dir(tag, where, base), pickled=True)
        ckpts.append(Checkpoint(name, step, spec))
    return ckpts, []


def _zero_config_dir(tag: Path, where: list[Path], base: Path | None) -> Path:
    """The folder whose config.json describes a ZeRO checkpoint: beside it as the trainers save it, else --base."""
    for folder in [*dict.fromkeys(where), *([base] if base is not None else [])]:
        if (folder / "config.json").is_file():
            _read_json(folder / "config.json")
            return folder.resolve()
    raise UserError(f"{tag} is a DeepSpeed ZeRO checkpoint but no config.json was found in "
                    f"{', '.join(str(w) for w in dict.fromkeys(where))}; pass --base with the Hugging Face model folder "
                    "it was trained from (the one holding config.json)")


def _root_name_step(run_dir: Path, steps: list[int]) -> tuple[str, int]:
    """A model at the root is "final" (step from trainer_state.json); RUN_DIR given as checkpoint-N keeps its name."""
    m = CHECKPOINT_RE.match(run_dir.resolve().name)
    if m:
        return m.group(0), int(m.group(1))
    return "final", _root_step(run_dir, steps)


def _root_step(run_dir: Path, steps: list[int]) -> int:
    state = run_dir / "trainer_state.json"
    if state.exists():
        step = _read_json(state).get("global_step")
        if isinstance(step, int):
            return step
    return max(steps) + 1 if steps else 0


def _same_weights(a: ModelSpec, b: ModelSpec) -> bool:
    """Same kind and same file digests (sizes, headers, samples of every tensor); unreadable -> not the same."""
    if a.kind != b.kind:
        return False
    try:
        return files_digest(weight_files(a.path, a.kind)) == files_digest(weight_files(b.path, b.kind))
    except (UserError, OSError):
        return False


def _checkpoints(run_dir: Path, base: Path | None, ref: ModelSpec | None,
                 trust_pickles: bool = False) -> tuple[list[Checkpoint], list[str]]:
    dirs, warnings = _checkpoint_dirs(run_dir)
    ckpts = [Checkpoint(d.name, step, model_spec(d, base, ref, trust_pickles=trust_pickles)) for step, d in dirs]
    zero_ckpts, zero_warnings = _zero_checkpoints(run_dir, base, trust_pickles)
    ckpts, warnings = ckpts + zero_ckpts, warnings + zero_warnings
    if is_model_dir(run_dir) and (_has_weights(run_dir) or not zero_ckpts):  # config.json only: the ZeRO ckpts'
        final = Checkpoint(*_root_name_step(run_dir, [s for s, _ in dirs] + [c.step for c in zero_ckpts]),
                           model_spec(run_dir, base, ref, trust_pickles=trust_pickles))
        if ckpts and _same_weights(final.spec, ckpts[-1].spec):
            warnings.append(f"the final model at {run_dir} has the same weights as {ckpts[-1].name}; scored once")
        else:
            ckpts.append(final)
    ckpts.sort(key=lambda c: (c.step, c.name == "final"))
    return ckpts, warnings


def _reference(ckpts: list[Checkpoint], ref: ModelSpec | None, base: Path | None) -> tuple[ModelSpec | None, str]:
    if ref is not None:
        return ref, "--ref"
    with_ref = [c for c in ckpts if (c.spec.path / "ref" / "adapter_config.json").exists()]
    if with_ref:
        sub = with_ref[-1].spec
        return model_spec(sub.path / "ref", base or _as_path(sub.base), None, hint="ref"), "ref/ sub-adapter"
    adapters = [c for c in ckpts if c.spec.kind == "adapter"]
    if adapters:
        base_path = Path(adapters[-1].spec.base)
        return ModelSpec(path=base_path, kind="full", base=None), "adapter base"
    return None, "none"


def _as_path(base: Path | str | None) -> Path | None:
    return Path(base) if base is not None else None


def discover(run_dir: Path, ref: Path | None = None, base: Path | None = None, trust_pickles: bool = False) -> Run:
    """Checkpoints (ordered by step), the reference and the run's settings of one training output folder."""
    given, run_dir = run_dir, resolve_model_path(run_dir, "RUN_DIR")  # a Hub id: its snapshot folder
    base = resolve_model_path(base, "--base") if base is not None else None
    if not run_dir.exists():
        raise UserError(f"{run_dir} does not exist; pass the training output folder (the one with checkpoint-N/)")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file; pass the training output folder (the one with checkpoint-N/)")
    ref_spec = _ref_spec(resolve_model_path(ref, "--ref"), base, trust_pickles) if ref is not None else None
    ckpts, warnings = _checkpoints(run_dir, base, ref_spec, trust_pickles)
    ckpts = _revision_checkpoints(given, base, ref_spec, trust_pickles) or ckpts
    if not ckpts:
        skipped = f" Skipped: {warnings[0]}" if warnings else ""
        raise UserError(f"No checkpoints found in {run_dir}: expected sub-folders with config.json or "
                        f"adapter_config.json (e.g. checkpoint-500/).{skipped}")
    config, config_warnings = read_train_config(run_dir, [c.spec.path for c in ckpts], trust_pickles)
    reference, source = _reference(ckpts, ref_spec, base)
    if source in ("adapter base", "none"):  # our trainer records its reference: it beats a guess
        reference, source = _configured_reference(run_dir, config, base, config_warnings) or (reference, source)
    if ref_spec is not None and any((c.spec.path / "ref").is_dir() for c in ckpts):
        warnings.append("the checkpoints carry a ref/ adapter but --ref was given; scoring against --ref")
    if reference is None:
        warnings.append("no reference found (full-weight checkpoints): pass --ref with the model training started from")
    warnings += architecture_warnings(ckpts, reference)
    name = run_dir.resolve().name if Path(given).expanduser().exists() else str(given)  # a Hub id names the run
    return Run(name=name, path=run_dir.resolve(), checkpoints=tuple(ckpts), reference=reference,
               reference_source=source, train_config=config, warnings=tuple(warnings + config_warnings))


def _revision_checkpoints(given, base, ref: ModelSpec | None, trust_pickles: bool) -> list[Checkpoint]:
    """A Hub run pushed as one revision per checkpoint (branches or tags `checkpoint-N` / `stepN`): each revision's
    snapshot is a checkpoint. Only for a Hub id given without @revision; [] otherwise."""
    parsed = None if Path(str(given)).expanduser().exists() else parse_hub_id(given)
    if parsed is None or parsed[1] is not None:
        return []
    from dpo_doctor.hub import checkpoint_revisions, snapshot

    return [Checkpoint(f"checkpoint-{step}", step, model_spec(snapshot(parsed[0], rev, "RUN_DIR"), base, ref,
                                                             trust_pickles=trust_pickles))
            for step, rev in checkpoint_revisions(parsed[0])]


def architecture_warnings(ckpts: list[Checkpoint], reference: ModelSpec | None) -> list[str]:
    """One warning per checkpoint whose config.json model_type differs from the reference's."""
    ref_type = model_type(reference) if reference is not None else None
    if ref_type is None:
        return []
    out = []
    for c in ckpts:
        mine = model_type(c.spec)
        if mine is not None and mine != ref_type:
            out.append(f"{c.name} is {mine}, the reference is {ref_type}: scores against a different architecture "
                       "mean nothing; pass the --ref this run was trained from")
    return out


def select_checkpoints(checkpoints, include: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> list:
    """The checkpoints named by --checkpoints (names or shell globs; all when empty) minus --skip-checkpoint.

    A pattern that matches no checkpoint is a UserError with a near match and the available names, and so is an
    empty selection: a typo must not silently scan nothing or everything.
    """
    names = [c.name for c in checkpoints]
    for flag, patterns in (("--checkpoints", include), ("--skip-checkpoint", skip)):
        for pat in patterns:
            if not fnmatch.filter(names, pat):
                hint = did_you_mean(pat, names)
                raise UserError(f"{flag} {pat} matches no checkpoint{hint}{' Available' if hint else '; available'}: "
                                f"{_name_list(names)}")
    keep = [c for c in checkpoints if not include or any(fnmatch.fnmatchcase(c.name, p) for p in include)]
    keep = [c for c in keep if not any(fnmatch.fnmatchcase(c.name, p) for p in skip)]
    if not keep:
        raise UserError(f"--checkpoints {' '.join(include) or '(all)'} with --skip-checkpoint {' '.join(skip)} leaves "
                        f"no checkpoint to scan; available: {_name_list(names)}")
    return keep


def _name_list(names: list[str], most: int = 8) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _configured_reference(run_dir: Path, config: dict, base: Path | None,
                          warnings: list[str]) -> tuple[ModelSpec, str] | None:
    """The reference our built-in trainer wrote into dpo_doctor_config.json, when it exists here."""
    name = config.get("reference")
    if not isinstance(name, str) or not name:
        return None
    for path in (Path(name).expanduser(), run_dir / name):
        if path.is_dir() and is_model_dir(path):
            return model_spec(path, base, None), "run config"
    warnings.append(f"{RUN_CONFIG} names reference {name}, which does not exist here; pass --ref PATH")
    return None


def _ref_spec(ref: Path, base: Path | None, trust_pickles: bool = False) -> ModelSpec:
    """--ref: a full model, or an adapter (an SFT LoRA) whose base resolves like any adapter's."""
    if not ref.exists():
        raise UserError(f"--ref {ref} does not exist; pass the reference model's folder")
    if not is_model_dir(ref):
        raise UserError(f"--ref {ref} has no config.json or adapter_config.json; pass a model folder")
    return model_spec(ref, base, None, trust_pickles=trust_pickles)


# ---- the run's training settings ------------------------------------------------------------------------------

def find_run_config(run_dir: Path, ckpt_dirs: list[Path] | None = None) -> Path | None:
    """Our trainer's dpo_doctor_config.json: at the root, else in the latest checkpoint (an interrupted run)."""
    if ckpt_dirs is None:
        ckpt_dirs = [d for _, d in _checkpoint_dirs(run_dir)[0]] if run_dir.is_dir() else []
    for d in [run_dir, *reversed(ckpt_dirs)]:
        if (d / RUN_CONFIG).exists():
            return d / RUN_CONFIG
    return None


def read_train_config(run_dir: Path, ckpt_dirs: list[Path], trust_pickles: bool) -> tuple[dict, list[str]]:
    """beta, loss_type, ... from our trainer's JSON; from training_args.bin (a pickle) only when trusted."""
    ours = find_run_config(run_dir, ckpt_dirs)
    if ours is not None:
        data = _read_json(ours)
        return {k: data[k] for k in data if not k.startswith("_")}, []
    pickles = [p / "training_args.bin" for p in [run_dir, *reversed(ckpt_dirs)] if (p / "training_args.bin").exists()]
    if not pickles:
        return {}, []
    if not trust_pickles:
        return {}, [f"{pickles[0]} not read: it is a pickle that can run code; pass --trust-pickles if you trust "
                    "it (gives beta and loss_type), or pass --beta"]
    return _unpickle_training_args(pickles[0])


def _unpickle_training_args(path: Path) -> tuple[dict, list[str]]:
    """Only reached with --trust-pickles: training_args.bin is a torch-pickled TrainingArguments/DPOConfig."""
    import torch

    try:
        args = torch.load(path, map_location="cpu", weights_only=False)  # user opted in with --trust-pickles
    except Exception as exc:  # a foreign or broken pickle: the settings are optional
        return {}, [f"{path} could not be read ({type(exc).__name__}: {exc}); pass --beta"]
    get = args.get if isinstance(args, dict) else (lambda k, d=None: getattr(args, k, d))
    config = {k: _plain(get(k)) for k in TRAIN_CONFIG_KEYS if get(k) is not None}
    return config, []


def _plain(value):
    """JSON-safe: enums to their value, tuples to lists."""
    if hasattr(value, "value") and not isinstance(value, (int, float, str)):
        return _plain(value.value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool)) else str(value)
