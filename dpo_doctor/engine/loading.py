"""Models and tokenizers from disk, checked before they are trusted.

Weights are read from safetensors (never remote code by default; pytorch_model.bin only under --trust-pickles, and
then with torch.load(weights_only=True)). Before any loader runs, `check_model` reads what is cheap to read and
compares it: every safetensors header against the file, config.json against the transformers that will build it
(custom code needs --trust-remote-code), every tensor's shape against the model the config builds (on the meta
device, no memory), and an adapter's config, target modules and LoRA shapes against its base. So a bad checkpoint
gives one line naming the file and the bad values instead of a stack trace from deep inside transformers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import re
from pathlib import Path

import torch

from dpo_doctor.discover import ModelSpec
from dpo_doctor.engine.compat import quiet_peft
from dpo_doctor.errors import UserError, did_you_mean
from dpo_doctor.weights import (
    files_digest, has_tokenizer, read_adapter_config, read_json, read_safetensors_header, weight_files,
)

_CONFIG_FILES = {"full": "config.json", "adapter": "adapter_config.json"}


_TRUST = "pass --trust-remote-code only if you trust that code (it runs on this machine)"


def validate_weights(spec: ModelSpec) -> list[Path]:
    """Check every safetensors file of the model (and of an adapter's base) against its header; return them."""
    files = weight_files(spec.path, spec.kind)
    for f in files:
        if not f.exists():
            raise UserError(f"{f} is missing; re-copy the checkpoint or delete it")
        if f.suffix == ".safetensors":
            read_safetensors_header(f)
        elif not spec.pickled:
            raise UserError(f"{f} is a pickle (can run code when read); pass --trust-pickles if you trust it")
    if spec.kind == "adapter":
        validate_weights(_base_spec(spec))
    return files


def check_model(spec: ModelSpec, trust_remote_code: bool = False):
    """Everything checkable without loading weights; returns the meta-device skeleton the config builds.

    Call it on the reference and every checkpoint right after discovery: a bad checkpoint then fails in seconds,
    not after the reference has been scored.
    """
    validate_weights(spec)
    folder = Path(spec.base) if spec.kind == "adapter" else spec.path
    skeleton = _skeleton(folder, trust_remote_code)
    _check_shapes(weight_files(folder, "full"), skeleton, folder / "config.json")
    if spec.kind == "adapter":
        check_adapter(spec.path, skeleton, folder)
    return skeleton


def check_custom_code(folder: Path, trust_remote_code: bool) -> dict:
    """config.json as a dict; UserError when it needs model code this transformers lacks and trust is not given."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    path = Path(folder) / "config.json"
    cfg = read_json(path)
    if trust_remote_code:
        return cfg
    auto_map = cfg.get("auto_map") if isinstance(cfg.get("auto_map"), dict) else {}
    custom = sorted(k for k in auto_map if k in ("AutoConfig", "AutoModel", "AutoModelForCausalLM"))
    if custom and native_auto_map(folder) is None:
        raise UserError(f"{path} asks for custom model code (auto_map {custom[0]} -> {auto_map[custom[0]]}), which "
                        f"dpo-doctor does not run by default; {_TRUST}")
    kind = cfg.get("model_type")
    if not isinstance(kind, str) or kind not in CONFIG_MAPPING_NAMES:
        import transformers

        hint = did_you_mean(kind, CONFIG_MAPPING_NAMES) if isinstance(kind, str) else ""
        raise UserError(f"{path}: model_type {json.dumps(kind)} is not known to transformers "
                        f"{transformers.__version__}{hint} Upgrade transformers, fix config.json, or if the model "
                        f"ships its own code, {_TRUST}")
    return cfg


def native_auto_map(folder: Path) -> str | None:
    """A warning when config.json names custom model code (auto_map) for a model_type transformers builds itself:
    without --trust-remote-code the native class is used (what transformers does too); None otherwise."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    path = Path(folder) / "config.json"
    try:
        cfg = read_json(path)
    except UserError:
        return None
    auto_map = cfg.get("auto_map") if isinstance(cfg.get("auto_map"), dict) else {}
    custom = sorted(k for k in auto_map if k in ("AutoConfig", "AutoModel", "AutoModelForCausalLM"))
    kind = cfg.get("model_type")
    if not custom or not isinstance(kind, str) or kind not in CONFIG_MAPPING_NAMES:
        return None
    return (f"{path} names custom model code (auto_map {custom[0]} -> {str(auto_map[custom[0]])[:80]}) for model_type "
            f"{kind}, which transformers builds natively: loaded with the native {kind} class, the custom code not "
            "run (pass --trust-remote-code to run it, only if you trust it)")


def _skeleton(folder: Path, trust_remote_code: bool):
    """The causal LM that folder's config.json builds, on the meta device (shapes only, no memory, no weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    check_custom_code(folder, trust_remote_code)
    try:
        with _quiet_transformers():
            config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
            with torch.device("meta"):
                return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UserError(f"{folder / 'config.json'} does not build a causal LM ({_first_line(exc)}); check "
                        "config.json or upgrade transformers") from None


def _check_shapes(files: list[Path], skeleton, config_path: Path) -> None:
    """Every stored tensor's shape (from the safetensors headers) must equal the shape config.json builds."""
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    for f in files:
        if f.suffix != ".safetensors":
            continue
        _, header = read_safetensors_header(f)
        for name, info in header.items():
            want = expected.get(name)
            if want is not None and tuple(info["shape"]) != want:
                raise UserError(f"{f}: tensor {name} has shape {list(info['shape'])} but {config_path} builds "
                                f"{list(want)}; config.json does not belong to these weights: re-copy it from the "
                                "run that saved them")


def check_adapter(adapter_dir: Path, skeleton, base: Path) -> None:
    """A LoRA's target modules must name modules of the base, and its lora_A/lora_B shapes must fit them."""
    cfg = read_adapter_config(adapter_dir)
    if cfg.get("peft_type") != "LORA":
        return
    modules = dict(skeleton.named_modules())
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in modules.items() if hasattr(m, "in_features")})
    targets = cfg["target_modules"]
    if isinstance(targets, str):
        if targets != "all-linear" and not any(re.fullmatch(targets, n) for n in modules):
            raise UserError(f"{adapter_dir / 'adapter_config.json'}: target_modules regex {targets!r} matches no "
                            f"module of the base {base} (its linear layers: {', '.join(linear[:8])}); pass the "
                            "--base this adapter was trained on")
    else:
        missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in modules)]
        if missing:
            hint = did_you_mean(missing[0], linear)
            raise UserError(f"{adapter_dir / 'adapter_config.json'}: target_modules {missing} match no module of the "
                            f"base {base}{hint} Its linear layers: {', '.join(linear[:8])}; pass the --base this "
                            "adapter was trained on or fix target_modules")
    _check_lora_shapes(adapter_dir / "adapter_model.safetensors", modules, base, cfg)


_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$")


def _check_lora_shapes(path: Path, modules: dict, base: Path, cfg: dict | None = None) -> None:
    """lora_A.weight is (r, in_features) and lora_B.weight is (out_features, r) of the base module it wraps, with r
    the rank adapter_config.json gives that module (`rank_pattern`, else `r`)."""
    _, header = read_safetensors_header(path)
    for name, info in header.items():
        m = _LORA_KEY.match(name)
        module = modules.get(m.group(1)) if m else None
        if module is None or not hasattr(module, "in_features"):
            continue
        shape = list(info["shape"])
        side = m.group(2)
        rank = _config_rank(cfg or {}, m.group(1))
        got = shape[0] if side == "A" else shape[-1]
        if rank is not None and len(shape) == 2 and got != rank:
            raise UserError(f"{path}: tensor {name} has shape {shape} (rank {got}) but {path.parent / 'adapter_config.json'} "
                            f"says r = {rank}; the config does not belong to these weights: re-save the adapter with "
                            "PEFT's save_pretrained or re-copy adapter_config.json")
        fits = len(shape) == 2 and (shape[1] == module.in_features if side == "A" else shape[0] == module.out_features)
        if not fits:
            want = f"(r, {module.in_features})" if side == "A" else f"({module.out_features}, r)"
            raise UserError(f"{path}: tensor {name} has shape {shape} but {m.group(1)} of the base {base} needs "
                            f"{want}; this adapter was trained on another base: pass the right --base")


def _config_rank(cfg: dict, module_name: str) -> int | None:
    """The rank PEFT gives `module_name`: the first `rank_pattern` key matching its name's end, else `r`."""
    pattern = cfg.get("rank_pattern") if isinstance(cfg.get("rank_pattern"), dict) else {}
    for key, value in pattern.items():
        try:
            if re.match(rf"(.*\.)?({key})$", module_name) and isinstance(value, int):
                return value
        except re.error:
            return None
    r = cfg.get("r")
    return r if isinstance(r, int) and not isinstance(r, bool) else None


def check_token_range(model_or_config, tokenizer, max_token_id: int, where: str) -> None:
    """Before any forward pass: every token id must have an embedding row (on CPU an out-of-range id is an
    IndexError, on CUDA a device-side assert that kills the process).

    model_or_config: a loaded model, a transformers config, or config.json as a dict. max_token_id: the largest
    id in the tokenized data (the tokenizer's PAD/EOS ids are checked too). where: the model's folder, for the message.
    """
    rows = embedding_rows(model_or_config)
    if rows is None:
        return
    size = len(tokenizer)
    specials = [i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if isinstance(i, int)]
    top = max([int(max_token_id), *specials])
    if top >= rows:
        raise UserError(f"{where}: the data has token id {top} but the model's embedding has only {rows} rows "
                        f"(ids 0..{rows - 1}; the tokenizer has {size} tokens); pass the tokenizer the model was "
                        "trained with (the right --ref)")
    if size > rows:
        raise UserError(f"{where}: the tokenizer has {size} tokens but the model's embedding has only {rows} rows; "
                        "pass the tokenizer the model was trained with (the right --ref)")


def check_same_rows(spec_config: dict, ref_config: dict, where: str, ref_where: str) -> None:
    """Generation probes compare the policy's next-token distribution with the reference's over one vocabulary: a
    checkpoint whose embedding has a different number of rows (tokens added by resize_token_embeddings, no tokenizer
    of its own saved) cannot be compared; its pairs still can (pass --no-generate)."""
    rows, ref_rows = embedding_rows(spec_config), embedding_rows(ref_config)
    if rows is None or ref_rows is None or rows == ref_rows:
        return
    diff = f"{rows - ref_rows} more" if rows > ref_rows else f"{ref_rows - rows} fewer"
    raise UserError(f"{where}: its embedding has {rows} rows, {diff} than the reference's {ref_rows} ({ref_where}): "
                    "tokens were added or removed in training, so its samples cannot be scored by the reference; pass "
                    "--no-generate to score the pairs only, or the --ref (with its tokenizer) this run was trained from")


def embedding_rows(model_or_config) -> int | None:
    """Rows of the input embedding: from a model's embedding, else the config's vocab_size."""
    if hasattr(model_or_config, "get_input_embeddings"):
        emb = model_or_config.get_input_embeddings()
        if emb is not None and hasattr(emb, "weight"):
            return int(emb.weight.shape[0])
    cfg = model_or_config.to_dict() if hasattr(model_or_config, "to_dict") else model_or_config
    if isinstance(cfg, dict):
        for c in (cfg, cfg.get("text_config") or {}):
            if isinstance(c.get("vocab_size"), int):
                return c["vocab_size"]
    return None


def model_config(spec: ModelSpec) -> dict:
    """config.json of what the spec computes with (an adapter's base), for check_token_range before loading."""
    folder = Path(spec.base) if spec.kind in ("adapter", "zero", "fsdp") else spec.path
    return read_json(Path(folder) / "config.json")


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' load reports go to the log; our checks say what matters in one line."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _base_spec(spec: ModelSpec) -> ModelSpec:
    if spec.base is None:
        raise UserError(f"adapter at {spec.path} has no base model; pass --base PATH")
    return ModelSpec(path=Path(spec.base), kind="full", base=None)


def load_model(spec: ModelSpec, device: str, dtype: torch.dtype, trust_remote_code: bool = False,
               device_map: str | None = None, cache_dir: Path | None = None):
    """The model in eval mode on `device`: full weights directly, an adapter on top of its base.

    An adapter is merged into the base only in float32. In bf16/fp16 the LoRA delta B·A is often below half an
    ulp of the base weight it would be added to, so merging would round the training away; the unmerged PEFT
    model computes x·W + (x·A)·B like TRL did during training.

    `device_map="auto"` spreads a model too large for one device over every visible device (and CPU RAM) with
    accelerate; inputs then follow the model's hooks, and `device` is not used.

    A DeepSpeed ZeRO checkpoint (kind "zero", only under --trust-pickles) is first converted once to safetensors in
    `cache_dir` (default: $DPO_DOCTOR_CACHE or ~/.cache/dpo-doctor; engine/zero.py), then loaded as a full model.
    An FSDP sharded checkpoint (kind "fsdp") likewise, into a full model or a LoRA adapter (engine/fsdp.py).
    """
    if spec.kind == "zero":
        from dpo_doctor.engine.zero import materialize

        spec = materialize(spec, cache_dir)
    elif spec.kind == "fsdp":
        from dpo_doctor.engine import fsdp

        spec = fsdp.materialize(spec, cache_dir)
    check_model(spec, trust_remote_code)
    place = (lambda m: m) if device_map else (lambda m: m.to(device))  # noqa: E731
    if spec.kind == "full":
        return place(_load_full(spec.path, dtype, trust_remote_code, device_map, spec.pickled)).eval()
    from peft import PeftModel

    base = _load_full(Path(spec.base), dtype, trust_remote_code, device_map)
    with quiet_peft():
        model = PeftModel.from_pretrained(base, str(spec.path), adapter_name=spec.adapter_name_hint or "default",
                                          is_trainable=False)
    if dtype == torch.float32 and not device_map:
        model = model.merge_and_unload()
    return place(model).eval()


def _load_full(path: Path, dtype: torch.dtype, trust_remote_code: bool, device_map: str | None = None,
               pickled: bool = False):
    """from_pretrained, with every weight required: a tensor missing from the files is an error, not a random init."""
    from transformers import AutoModelForCausalLM

    kwargs = {"device_map": device_map} if device_map else {}
    try:
        with _quiet_transformers():
            if pickled:
                model, info = _load_pickled(path, dtype, trust_remote_code, kwargs)
            else:
                model, info = AutoModelForCausalLM.from_pretrained(
                    str(path), dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code,
                    output_loading_info=True, **kwargs)
    except (ValueError, RuntimeError, OSError) as exc:  # e.g. an architecture this transformers does not know
        raise UserError(f"{path} could not be loaded as a causal LM ({_first_line(exc)}); "
                        "check config.json or upgrade transformers") from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise UserError(f"{path}: {len(missing)} weight(s) that config.json needs are not in the weight files (e.g. "
                        f"{missing[0]}); they would be random. Re-copy the checkpoint or its config.json")
    return model


def _load_pickled(path: Path, dtype: torch.dtype, trust_remote_code: bool, kwargs: dict):
    """pytorch_model.bin (only under --trust-pickles): torch.load(weights_only=True), which refuses anything but
    tensors and plain containers, so a crafted pickle cannot run code; then built from config.json."""
    from transformers import AutoConfig, AutoModelForCausalLM

    state = {}
    for f in weight_files(path, "full"):
        try:
            part = torch.load(f, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
            raise UserError(f"{f} could not be read as plain tensors (torch.load(weights_only=True) refused it: "
                            f"{_first_line(exc)[:160]}); re-save the model with save_pretrained(..., "
                            "safe_serialization=True)") from None
        if not isinstance(part, dict) or not all(isinstance(v, torch.Tensor) for v in part.values()):
            raise UserError(f"{f} is not a state dict of tensors; re-save the model with save_pretrained(..., "
                            "safe_serialization=True)")
        state.update(part)
    config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    model_class = type(AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)) \
        if trust_remote_code else _causal_lm_class(config)
    return model_class.from_pretrained(None, config=config, state_dict=state, dtype=dtype,
                                       output_loading_info=True, **kwargs)


def _causal_lm_class(config):
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    return MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]


def load_tokenizer(path: Path, fallback: Path | None = None, trust_remote_code: bool = False):
    """(tokenizer, warnings). The checkpoint's own tokenizer, else `fallback`'s (the reference's) with a warning.

    A saved tokenizer.json is loaded with PreTrainedTokenizerFast so it is used exactly as saved: AutoTokenizer
    may rebuild a model-specific class whose normalizer or pre-tokenizer differ from the file. PAD falls back to
    EOS, as TRL does, so batches can be padded.
    """
    warnings = []
    source = Path(path)
    if not has_tokenizer(source):
        if fallback is None or not has_tokenizer(Path(fallback)):
            extra = f" nor in {fallback}" if fallback is not None else ""
            raise UserError(f"no tokenizer in {path}{extra}: copy tokenizer.json and tokenizer_config.json into "
                            f"{path}")
        warnings.append(f"{path} has no tokenizer; using the one in {fallback}")
        source = Path(fallback)
    tok = _read_tokenizer(source, trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, warnings


def _read_tokenizer(path: Path, trust_remote_code: bool = False):
    """tokenizer.json as saved; else AutoTokenizer, whose custom code (auto_map) runs only with trust_remote_code."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (path / "tokenizer.json").exists():
        def load():
            return PreTrainedTokenizerFast.from_pretrained(str(path))
    else:
        _check_tokenizer_code(path, trust_remote_code)

        def load():  # the flag reaches AutoTokenizer (a bound classmethod is a new object at every access, so an
            return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)  # `is` test fails)
    try:
        with _quiet_transformers():
            return load()
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UserError(f"the tokenizer in {path} could not be read ({str(exc).splitlines()[0]}); re-copy "
                        "tokenizer.json / tokenizer_config.json") from None


def _check_tokenizer_code(path: Path, trust_remote_code: bool) -> None:
    config = path / "tokenizer_config.json"
    if trust_remote_code or not config.exists():
        return
    auto_map = read_json(config).get("auto_map")
    if auto_map:
        target = auto_map.get("AutoTokenizer") if isinstance(auto_map, dict) else auto_map
        raise UserError(f"{config} asks for custom tokenizer code (auto_map AutoTokenizer -> {target}), which "
                        f"dpo-doctor does not run by default; {_TRUST}")


def tokenizers_compatible(a, b) -> str | None:
    """None when both map the same strings to the same ids (same vocab and EOS), else a one-line reason."""
    va, vb = a.get_vocab(), b.get_vocab()
    if va != vb:
        if len(va) != len(vb):
            return f"vocabularies differ in size ({len(va)} vs {len(vb)} tokens)"
        diff = sorted(k for k in va.keys() | vb.keys() if va.get(k) != vb.get(k))
        return f"vocabularies differ in {len(diff)} tokens (e.g. {diff[0]!r}: {va.get(diff[0])} vs {vb.get(diff[0])})"
    if a.eos_token_id != b.eos_token_id:
        return f"EOS differs ({a.eos_token!r} id {a.eos_token_id} vs {b.eos_token!r} id {b.eos_token_id})"
    return None


def weights_fingerprint(spec: ModelSpec) -> str:
    """Identity of what the model computes, for the score cache: the config file plus a digest of the weight files
    (sizes, safetensors headers, samples of every tensor; see weights.file_digest), plus the base's fingerprint
    for an adapter. Independent of the folder's path and mtimes, so a copied run still hits the cache.
    """
    h = hashlib.sha256(spec.kind.encode())
    config = Path(spec.base) / "config.json" if spec.kind == "zero" else spec.path / _CONFIG_FILES.get(spec.kind, "")
    if spec.kind == "fsdp":  # FSDP shards: the config found beside them (adapter_config.json for a LoRA)
        config = Path(spec.config_dir) / ("adapter_config.json" if spec.fsdp_adapter else "config.json")
    if config.is_file():
        h.update(config.read_bytes())
    h.update(files_digest(weight_files(spec.path, spec.kind)).encode())
    if spec.kind == "adapter" or spec.fsdp_adapter:
        h.update(weights_fingerprint(_base_spec(spec)).encode())
    return h.hexdigest()[:32]

