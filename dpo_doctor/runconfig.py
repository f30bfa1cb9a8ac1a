"""The run's own training settings (beta, loss_type, ...), read from what the trainers save, with nothing executed.

Where each trainer keeps them (looked up in order; the first file that names a beta wins, and says so):

- dpo-doctor's own trainer: `dpo_doctor_config.json` at the run root (or in the latest checkpoint).
- TRL (and any HF Trainer): `training_args.bin`, a `torch.save` pickle of the DPOConfig. It is walked as inert
  records (`weights.read_pickle_inert`): no class it names is imported, nothing is called, no tensor is loaded.
- LLaMA-Factory: `training_args.yaml` (LlamaBoard writes the full argument set into the output dir): `pref_beta`,
  `pref_loss` (sigmoid, hinge, ipo, kto_pair, orpo, simpo), `dpo_label_smoothing`, `pref_ftx`.
- ms-swift: `args.json` in the output dir and in every checkpoint: `beta`, `loss_type`, `rlhf_type` (dpo, orpo,
  simpo, cpo, kto...), `rpo_alpha`, `label_smoothing`.
- W&B run folders (`wandb/run-*/files/config.yaml`): HF's integration logs every training argument, OpenRLHF its
  argparse namespace (`beta`, `ipo`, `label_smoothing`, `nll_loss_coef`).
- TensorBoard: HF's TensorBoardCallback writes the arguments as JSON text under the tag `args`.

TRL's ORPOConfig / CPOConfig (SimPO is CPO with loss_type simpo) mark the run reference-free.

`read_train_config` returns a `TrainConfig`: the settings under TRL's names, the file they came from, and warnings.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from dpo_doctor.errors import UserError
from dpo_doctor.weights import InertGlobal, plain, read_json, read_pickle_inert

RUN_CONFIG = "dpo_doctor_config.json"  # written by our built-in trainer at the run root
TRAIN_CONFIG_KEYS = (
    "beta", "loss_type", "loss_weights", "label_smoothing", "ld_alpha", "rpo_alpha", "reference_free",
    "f_divergence_type", "use_weighting", "max_length", "max_prompt_length", "max_completion_length",
    "truncation_mode", "padding_free", "precompute_ref_log_probs", "sync_ref_model", "ref_model_mixup_alpha",
    "ref_model_sync_steps", "learning_rate", "num_train_epochs", "seed", "simpo_gamma", "cpo_alpha",
)
LLAMA_FACTORY_KEYS = {"pref_beta": "beta", "pref_loss": "loss_type", "dpo_label_smoothing": "label_smoothing",
                      "pref_ftx": "rpo_alpha", "simpo_gamma": "simpo_gamma", "cutoff_len": "max_length",
                      "ld_alpha": "ld_alpha", "learning_rate": "learning_rate", "num_train_epochs": "num_train_epochs"}
SWIFT_REF_FREE = {"orpo", "simpo", "cpo"}  # ms-swift rlhf_type values that train without a reference
REF_FREE_CONFIGS = {"ORPOConfig": "orpo", "CPOConfig": "cpo"}  # TRL trainers with no reference model
YAML_LIMIT = 4 << 20


@dataclass(frozen=True)
class TrainConfig:
    """The run's settings under TRL's names (`loss_type` a string, several losses joined by "+"), and their file."""

    values: dict = field(default_factory=dict)
    source: str | None = None  # e.g. "training_args.bin (read without unpickling)"
    path: Path | None = None
    warnings: tuple[str, ...] = ()


def find_run_config(folders: list[Path]) -> Path | None:
    """Our trainer's dpo_doctor_config.json in the first of `folders` that has one (run root, then checkpoints)."""
    for d in folders:
        if (d / RUN_CONFIG).exists():
            return d / RUN_CONFIG
    return None


def read_train_config(run_dir: Path, ckpt_dirs: list[Path]) -> TrainConfig:
    """The first source (see the module docstring) that names a beta; else the first with any setting; else empty."""
    folders = [run_dir, *reversed(ckpt_dirs)]
    warnings, partial = [], None
    for reader in (_ours, _training_args_bin, _llama_factory, _swift, _wandb, _tensorboard):
        try:
            found = reader(run_dir, folders)
        except _Unreadable as exc:
            warnings.append(str(exc))
            continue
        if found is None:
            continue
        if "beta" in found.values:
            return TrainConfig(found.values, found.source, found.path, tuple(warnings))
        partial = partial or found
    if partial is not None:
        return TrainConfig(partial.values, partial.source, partial.path, tuple(warnings))
    return TrainConfig(warnings=tuple(warnings))


class _Unreadable(Exception):
    """A settings file that exists but cannot be read: a warning, never a failed scan (the settings are optional)."""


def _first(folders: list[Path], name: str) -> Path | None:
    return next((d / name for d in folders if (d / name).is_file()), None)


def _normalized(values: dict) -> dict:
    """TRL's names and types: loss_type a string ("sigmoid", or "sigmoid+sft" for several), numbers as floats."""
    out = {k: v for k, v in values.items() if v is not None}
    loss = out.get("loss_type")
    if isinstance(loss, list):
        out["loss_type"] = "+".join(str(x) for x in loss) if loss else None
    beta = out.get("beta")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
        out.pop("beta", None)
    else:
        out["beta"] = float(beta)
    return {k: v for k, v in out.items() if v is not None}


def _pick(data: dict, keys=TRAIN_CONFIG_KEYS) -> dict:
    return {k: data[k] for k in keys if k in data}


# ---- one reader per trainer ------------------------------------------------------------------------------------

def _ours(run_dir: Path, folders: list[Path]) -> TrainConfig | None:
    path = find_run_config(folders)
    if path is None:
        return None
    data = read_json(path)
    values = {k: data[k] for k in data if not k.startswith("_")}
    if isinstance(values.get("loss_type"), list):
        values = _normalized(values)
    return TrainConfig(values, RUN_CONFIG, path)


def _training_args_bin(run_dir: Path, folders: list[Path]) -> TrainConfig | None:
    """TRL's DPOConfig (any HF TrainingArguments) pickled by torch.save, read as inert records."""
    path = _first(folders, "training_args.bin")
    if path is None:
        return None
    try:
        obj = read_pickle_inert(path)
    except (ValueError, OSError) as exc:
        raise _Unreadable(f"{path} could not be read ({exc}); pass --beta") from None
    fields = obj.fields() if isinstance(obj, InertGlobal) else obj if isinstance(obj, dict) else None
    if not fields:
        what = f"{obj.module}.{obj.qualname}" if isinstance(obj, InertGlobal) else type(obj).__name__
        raise _Unreadable(f"{path} holds no training arguments (it pickles a {what[:80]!r}); pass --beta")
    values = _normalized({k: plain(v) for k, v in _pick(fields).items()})
    trainer = REF_FREE_CONFIGS.get(obj.qualname) if isinstance(obj, InertGlobal) else None
    if trainer is not None:  # TRL's ORPOTrainer / CPOTrainer (SimPO is CPO with loss_type simpo): no reference
        values["reference_free"] = True
        values["loss_type"] = trainer if trainer == "orpo" or values.get("loss_type") in (None, "sigmoid") \
            else values["loss_type"]
    return TrainConfig(values, "training_args.bin (read without unpickling)", path) if values else None


def _llama_factory(run_dir: Path, folders: list[Path]) -> TrainConfig | None:
    path = _first(folders, "training_args.yaml")
    if path is None:
        return None
    data = _read_yaml(path)
    values = {ours: data[theirs] for theirs, ours in LLAMA_FACTORY_KEYS.items() if theirs in data}
    if data.get("stage") not in (None, "dpo", "kto"):
        raise _Unreadable(f"{path} is a LLaMA-Factory stage {data.get('stage')!r} run, not DPO; its settings are "
                          "not used (pass --beta)")
    if values.get("loss_type") in ("orpo", "simpo"):
        values["reference_free"] = True
    return TrainConfig(_normalized(values), "LLaMA-Factory training_args.yaml", path)


def _swift(run_dir: Path, folders: list[Path]) -> TrainConfig | None:
    path = _first(folders, "args.json")
    if path is None:
        return None
    try:
        data = read_json(path)
    except UserError as exc:
        raise _Unreadable(f"{exc}; its settings are not used") from None
    if "rlhf_type" not in data:  # an args.json from another tool: not ours to read
        return None
    values = _pick(data)
    kind = data.get("rlhf_type")
    if kind in SWIFT_REF_FREE:
        values["loss_type"], values["reference_free"] = kind, True
    return TrainConfig(_normalized(values), "ms-swift args.json", path)


def _wandb(run_dir: Path, folders: list[Path]) -> TrainConfig | None:
    """config.yaml of the newest W&B run folder: each key maps to {value: ...} (older SDKs add desc: null)."""
    root = run_dir / "wandb"
    runs = [d for g in ("run-*", "offline-run-*") for d in root.glob(g)] if root.is_dir() else []
    files = [d / "files" / "config.yaml" for d in runs if (d / "files" / "config.yaml").is_file()]
    if not files:
        return None
    path = max(files, key=lambda p: p.parent.parent.name.rsplit("run-", 1)[-1])
    raw = _read_yaml(path)
    data = {k: (v.get("value") if isinstance(v, dict) and "value" in v else v) for k, v in raw.items()}
    values = _pick(data)
    if data.get("ipo") is True:  # OpenRLHF's --ipo
        values["loss_type"] = "ipo"
    return TrainConfig(_normalized(values), "W&B config.yaml", path) if values else None


def _tensorboard(run_dir: Path, folders: list[Path]) -> TrainConfig | None:
    """The JSON that HF's TensorBoardCallback writes as the text summary `args` (tag args/text_summary)."""
    files = sorted((p for p in _event_files(run_dir, 4)), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in files:
        text = _args_text(path)
        if text is None:
            continue
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise _Unreadable(f"{path}: its `args` text is not JSON; its settings are not used") from None
        values = _pick(data) if isinstance(data, dict) else {}
        return TrainConfig(_normalized(values), "TensorBoard args", path) if values else None
    return None


def _event_files(folder: Path, depth: int):
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("events.out.tfevents.") and entry.is_file():
            yield entry
        elif depth > 0 and entry.is_dir() and not entry.name.startswith(("checkpoint-", "global_step", ".", "wandb")):
            yield from _event_files(entry, depth - 1)


def _args_text(path: Path) -> str | None:
    """The first `args` text summary in an event file, or None (no protobuf classes installed: None too)."""
    event_cls = _event_class()
    if event_cls is None:
        return None
    data, pos = path.read_bytes(), 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        raw, pos = data[pos + 12:pos + 12 + length], pos + 16 + length
        event = event_cls()
        try:
            event.ParseFromString(raw)
        except Exception:  # protobuf's DecodeError: a corrupt record; the settings are optional
            return None
        for value in event.summary.value:
            if value.tag in ("args/text_summary", "args") and value.tensor.string_val:
                return value.tensor.string_val[0].decode("utf-8", errors="replace")
    return None


def _event_class():
    try:
        from tensorboard.compat.proto.event_pb2 import Event
    except ImportError:
        try:
            from tensorboardX.proto.event_pb2 import Event
        except ImportError:
            return None
    return Event


def _read_yaml(path: Path) -> dict:
    """A YAML mapping with yaml.safe_load (plain data only: no tags that build objects)."""
    import yaml

    try:
        if path.stat().st_size > YAML_LIMIT:
            raise _Unreadable(f"{path} is over {YAML_LIMIT >> 20} MiB: not a settings file; its settings are not used")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError, RecursionError) as exc:
        raise _Unreadable(f"{path} is not readable YAML ({type(exc).__name__}); its settings are not used") from None
    if not isinstance(data, dict):
        raise _Unreadable(f"{path} does not hold a YAML mapping; its settings are not used")
    return {str(k): v for k, v in data.items()}
