"""Find the checkpoints of a training run, the reference they are measured against, and the run's settings.

Reads only file names, JSON and safetensors headers (no torch at import time, nothing unpickled by default).
Layout handled (see shared reference 1.7): `checkpoint-N/` sub-folders and/or a final model at the root, or a
single model folder; full weights (`model.safetensors`, or shards + `model.safetensors.index.json`) and PEFT
LoRA folders (`adapter_config.json` + `adapter_model.safetensors`); DeepSpeed ZeRO folders (under --trust-pickles)
and FSDP sharded checkpoints (`checkpoint-N/pytorch_model_fsdp_0/`, read without unpickling: weights.read_dcp_layout). The reference is `--ref`, else a `ref/`
sub-adapter saved by TRL when it re-trains an existing adapter, else the reference our built-in trainer recorded
in dpo_doctor_config.json, else (for a new LoRA) the adapters' base, since TRL's reference is then the base with
adapters disabled.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from dpo_doctor import runconfig
from dpo_doctor.errors import UserError, did_you_mean
from dpo_doctor.hub import fetch_command, offline_vars, parse_hub_id, resolve_model_path
from dpo_doctor.runconfig import RUN_CONFIG
from dpo_doctor.weights import (
    ADAPTER_WEIGHTS, FSDP_DIR, FULL_INDEX, FULL_WEIGHTS, files_digest, fsdp_dir, has_weights, is_model_dir,
    is_zero_folder, model_kind, read_adapter_config, read_dcp_layout, read_json, weight_files,
)

CHECKPOINT_RE = re.compile(r"^checkpoint-([0-9]+)\Z")  # ASCII digits only: "checkpoint-\u0663" is no step 3
CHECKPOINT_LIKE = re.compile(r"^checkpoint[-_]")


@dataclass(frozen=True)
class ModelSpec:
    """Anything loadable: a checkpoint or the reference.

    path: folder with config.json + safetensors, or adapter_config.json + adapter_model.safetensors.
    base: for adapters, the resolved base model (a local folder); None for full models.
    """

    path: Path
    kind: str  # "full" | "adapter" | "zero" (a DeepSpeed global_stepN/ folder; base = the folder with its config.json)
    #            | "fsdp" (a checkpoint-N/ whose weights are only FSDP shards in pytorch_model_fsdp_0/; base = the
    #            folder whose config.json builds the model: config_dir for full weights, the base model for a LoRA)
    base: Path | str | None
    adapter_name_hint: str | None = None
    pickled: bool = False  # weights are pytorch_model.bin: set only by discovery under --trust-pickles
    config_dir: Path | None = None  # fsdp: the folder holding its config.json, or adapter_config.json for a LoRA

    @property
    def fsdp_adapter(self) -> bool:
        """An FSDP checkpoint of LoRA weights (adapter_only, as the HF Trainer saves PEFT models under FSDP)."""
        return self.kind == "fsdp" and self.config_dir is not None and \
            (Path(self.config_dir) / "adapter_config.json").is_file()


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
    train_config: dict  # beta, loss_type, ... under TRL's names (runconfig.py)
    warnings: tuple[str, ...]
    train_config_source: str | None = None  # the file train_config came from, e.g. "training_args.bin (...)"


# ---- one model folder -----------------------------------------------------------------------------------------

def _named_base(adapter_dir: Path) -> Path | None:
    """The adapter's `base_model_name_or_path` when it exists here (as a path, or a Hub id already cached)."""
    name = read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
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
    name = read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
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
        read_json(path / "config.json")
    resolved = resolve_base(path, base, ref) if kind == "adapter" else None
    return ModelSpec(path=path.resolve(), kind=kind, base=resolved, adapter_name_hint=hint,
                     pickled=kind == "full" and not (path / FULL_WEIGHTS).exists() and not (path / FULL_INDEX).exists())


def model_type(spec: ModelSpec) -> str | None:
    """config.json's model_type (an adapter's: its base's); None when unknown."""
    folder = Path(spec.base) if spec.kind in ("adapter", "zero", "fsdp") and spec.base is not None else spec.path
    try:
        value = read_json(Path(folder) / "config.json").get("model_type")
    except UserError:
        return None
    return value if isinstance(value, str) else None


# ---- a run ----------------------------------------------------------------------------------------------------

def _checkpoint_dirs(run_dir: Path) -> tuple[list[tuple[int, Path]], list[str]]:
    """`checkpoint-N` folders by N (ASCII digits). Skipped with a warning: a checkpoint-like name without a step
    number (checkpoint-final), and a folder with no config (DeepSpeed shards only) or a config but no weights.
    ZeRO and FSDP shard folders are left to _zero_checkpoints and _fsdp_checkpoints."""
    found, warnings = [], []
    for child in sorted(run_dir.iterdir()):
        m = CHECKPOINT_RE.match(child.name)
        if not child.is_dir() or not (m or CHECKPOINT_LIKE.match(child.name)):
            continue
        if not m:
            warnings.append(f"{child.name} skipped: its name has no step number (expected checkpoint-<digits>, e.g. "
                            f"checkpoint-500); rename it, or scan it alone with dpo-doctor scan {child}")
        elif zero_tag(child) is not None and not has_weights(child):
            continue  # DeepSpeed ZeRO only (HF Trainer without gathered weights): see _zero_checkpoints
        elif fsdp_dir(child) is not None and not has_weights(child):
            continue  # FSDP SHARDED_STATE_DICT only: see _fsdp_checkpoints
        elif not is_model_dir(child):
            warnings.append(f"{child} has no config.json or adapter_config.json (DeepSpeed/FSDP shards only?); "
                            "skipped. Convert it with zero_to_fp32.py or save_pretrained to scan it")
        elif not has_weights(child):
            warnings.append(f"{child.name} skipped: it has a config but no weights ({FULL_WEIGHTS}, shards + index, "
                            f"{ADAPTER_WEIGHTS} or pytorch_model.bin); the save was interrupted? Re-copy it to scan it")
        else:
            found.append((int(m.group(1)), child))
    return sorted(found), warnings



ZERO_TAG_RE = re.compile(r"^global_step([0-9]+)\Z")


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
        if m and tag is not None and not has_weights(d):
            found.append((d.name, int(m.group(1)), tag, [d, run_dir]))
    for save_dir in [run_dir, *(d for d in children if not CHECKPOINT_LIKE.match(d.name))]:
        for step, tag in _zero_tags(save_dir):
            hf = save_dir / f"{tag.name}_hf"
            if is_model_dir(hf) and has_weights(hf):
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
            read_json(folder / "config.json")
            return folder.resolve()
    raise UserError(f"{tag} is a DeepSpeed ZeRO checkpoint but no config.json was found in "
                    f"{', '.join(str(w) for w in dict.fromkeys(where))}; pass --base with the Hugging Face model folder "
                    "it was trained from (the one holding config.json)")


def _fsdp_checkpoints(run_dir: Path, base: Path | None, ref: ModelSpec | None) -> tuple[list[Checkpoint], list[str]]:
    """checkpoint-N/ folders whose weights are only FSDP shards (pytorch_model_fsdp_0/, accelerate's
    SHARDED_STATE_DICT), or RUN_DIR itself as one. Read without unpickling code (weights.read_dcp_layout)."""
    found = [(int(m.group(1)), d) for d in sorted(run_dir.iterdir())
             if (m := CHECKPOINT_RE.match(d.name)) and d.is_dir() and fsdp_dir(d) is not None and not has_weights(d)]
    m = CHECKPOINT_RE.match(run_dir.resolve().name)
    if m and fsdp_dir(run_dir) is not None and not has_weights(run_dir):
        found.append((int(m.group(1)), run_dir))
    ckpts, warnings = [], []
    for step, d in found:
        where = list(dict.fromkeys([d, d.resolve().parent]))
        adapter, config = fsdp_config_dir(d, where, base)
        if config is None:
            wanted = "adapter_config.json (its weights are LoRA)" if adapter else "config.json"
            fix = (f"copy the adapter_config.json the run saved into {d}" if adapter else
                   "pass --base with the Hugging Face model folder it was trained from (the one holding config.json), "
                   f"or copy that config.json into {d}")
            warnings.append(f"{d.resolve().name} skipped: an FSDP sharded checkpoint ({FSDP_DIR}/) but no {wanted} "
                            f"was found in {' or '.join(str(w) for w in where)}; {fix}")
            continue
        resolved = resolve_base(config, base, ref) if adapter else config
        ckpts.append(Checkpoint(d.resolve().name, step, ModelSpec(path=d.resolve(), kind="fsdp", base=resolved,
                                                                  config_dir=config)))
    return ckpts, warnings


def fsdp_config_dir(ckpt: Path, where: list[Path], base: Path | None) -> tuple[bool, Path | None]:
    """(LoRA weights?, the folder whose config describes a checkpoint's pytorch_model_fsdp_0/; None if none does).

    LoRA weights (adapter_only, keys with `lora_`) need an adapter_config.json beside them or at the run root; full
    weights need config.json there or in --base. The HF Trainer writes neither under SHARDED_STATE_DICT (it calls
    save_pretrained only for FULL_STATE_DICT): they come from the final save at the run root, a copy, or --base.
    """
    names = [t.name for t in read_dcp_layout(ckpt / FSDP_DIR)]
    adapter = any(".lora_" in n for n in names)
    if adapter and any(".base_layer." in n for n in names):
        raise UserError(f"{ckpt / FSDP_DIR} holds a whole PEFT model (base and LoRA weights), which dpo-doctor cannot "
                        "split; save the adapter only (adapter_only=True, the HF Trainer's default) or with fsdp_state_dict_type "
                        "FULL_STATE_DICT")
    wanted = "adapter_config.json" if adapter else "config.json"
    folders = where if adapter or base is None else [*where, base]
    config = next((Path(f) for f in folders if (Path(f) / wanted).is_file()), None)
    if config is not None and adapter:
        read_adapter_config(config)
    elif config is not None:
        read_json(config / wanted)
    return adapter, config.resolve() if config is not None else None


def _root_name_step(run_dir: Path, steps: list[int]) -> tuple[str, int]:
    """A model at the root is "final" (step from trainer_state.json); RUN_DIR given as checkpoint-N keeps its name."""
    m = CHECKPOINT_RE.match(run_dir.resolve().name)
    if m:
        return m.group(0), int(m.group(1))
    return "final", _root_step(run_dir, steps)


def _root_step(run_dir: Path, steps: list[int]) -> int:
    state = run_dir / "trainer_state.json"
    if state.exists():
        step = read_json(state).get("global_step")
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
    fsdp_ckpts, fsdp_warnings = _fsdp_checkpoints(run_dir, base, ref)
    zero_ckpts += fsdp_ckpts
    ckpts, warnings = ckpts + zero_ckpts, warnings + zero_warnings + fsdp_warnings
    if is_model_dir(run_dir) and (has_weights(run_dir) or not zero_ckpts):  # config.json only: the ZeRO/FSDP ckpts'
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
    adapters = [c for c in ckpts if c.spec.kind == "adapter" or c.spec.fsdp_adapter]
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
    settings = runconfig.read_train_config(run_dir, [c.spec.path for c in ckpts])
    config, config_warnings = settings.values, list(settings.warnings)
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
               reference_source=source, train_config=config, warnings=tuple(warnings + config_warnings),
               train_config_source=settings.source)


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
    return runconfig.find_run_config([run_dir, *reversed(ckpt_dirs)])


def run_train_config(run_dir: Path) -> runconfig.TrainConfig:
    """The run's settings when no checkpoint was discovered (a log-only scan): the root and its checkpoint-N/."""
    ckpt_dirs = [d for _, d in _checkpoint_dirs(run_dir)[0]] if run_dir.is_dir() else []
    return runconfig.read_train_config(run_dir, ckpt_dirs)
