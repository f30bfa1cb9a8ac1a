"""Models and tokenizers from disk, checked before they are trusted.

Weights are read from safetensors only (never unpickled, never remote code by default). Every safetensors file is
checked against its header first, so a half-copied checkpoint gives a one-line error naming the file instead of a
stack trace from deep inside transformers. Adapters are loaded onto their base with PEFT.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from dpo_doctor.discover import (
    ModelSpec, files_digest, has_tokenizer, read_safetensors_header, weight_files,
)
from dpo_doctor.engine.compat import quiet_peft
from dpo_doctor.errors import UserError

_CONFIG_FILES = {"full": "config.json", "adapter": "adapter_config.json"}


def validate_weights(spec: ModelSpec) -> list[Path]:
    """Check every safetensors file of the model (and of an adapter's base) against its header; return them."""
    files = weight_files(spec.path, spec.kind)
    for f in files:
        if not f.exists():
            raise UserError(f"{f} is missing; re-copy the checkpoint or delete it")
        read_safetensors_header(f)
    if spec.kind == "adapter":
        validate_weights(_base_spec(spec))
    return files


def _base_spec(spec: ModelSpec) -> ModelSpec:
    if spec.base is None:
        raise UserError(f"adapter at {spec.path} has no base model; pass --base PATH")
    return ModelSpec(path=Path(spec.base), kind="full", base=None)


def load_model(spec: ModelSpec, device: str, dtype: torch.dtype, trust_remote_code: bool = False,
               device_map: str | None = None):
    """The model in eval mode on `device`: full weights directly, an adapter on top of its base.

    An adapter is merged into the base only in float32. In bf16/fp16 the LoRA delta B·A is often below half an
    ulp of the base weight it would be added to, so merging would round the training away; the unmerged PEFT
    model computes x·W + (x·A)·B like TRL did during training.

    `device_map="auto"` spreads a model too large for one device over every visible device (and CPU RAM) with
    accelerate; inputs then follow the model's hooks, and `device` is not used.
    """
    validate_weights(spec)
    place = (lambda m: m) if device_map else (lambda m: m.to(device))  # noqa: E731
    if spec.kind == "full":
        return place(_load_full(spec.path, dtype, trust_remote_code, device_map)).eval()
    from peft import PeftModel

    base = _load_full(Path(spec.base), dtype, trust_remote_code, device_map)
    with quiet_peft():
        model = PeftModel.from_pretrained(base, str(spec.path), adapter_name=spec.adapter_name_hint or "default",
                                          is_trainable=False)
    if dtype == torch.float32 and not device_map:
        model = model.merge_and_unload()
    return place(model).eval()


def _load_full(path: Path, dtype: torch.dtype, trust_remote_code: bool, device_map: str | None = None):
    from transformers import AutoModelForCausalLM

    try:
        kwargs = {"device_map": device_map} if device_map else {}
        return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, use_safetensors=True,
                                                    trust_remote_code=trust_remote_code, **kwargs)
    except ValueError as exc:  # e.g. an architecture this transformers does not know
        raise UserError(f"{path} could not be loaded as a causal LM ({str(exc).splitlines()[0]}); "
                        "check config.json or upgrade transformers") from None


def load_tokenizer(path: Path, fallback: Path | None = None):
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
    tok = _read_tokenizer(source)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, warnings


def _read_tokenizer(path: Path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        if (path / "tokenizer.json").exists():
            return PreTrainedTokenizerFast.from_pretrained(str(path))
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise UserError(f"the tokenizer in {path} could not be read ({str(exc).splitlines()[0]}); re-copy "
                        "tokenizer.json / tokenizer_config.json") from None


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
    (sizes, safetensors headers, samples of every tensor; see discover.file_digest), plus the base's fingerprint
    for an adapter. Independent of the folder's path and mtimes, so a copied run still hits the cache.
    """
    h = hashlib.sha256(spec.kind.encode())
    config = spec.path / _CONFIG_FILES[spec.kind]
    if config.exists():
        h.update(config.read_bytes())
    h.update(files_digest(weight_files(spec.path, spec.kind)).encode())
    if spec.kind == "adapter":
        h.update(weights_fingerprint(_base_spec(spec)).encode())
    return h.hexdigest()[:32]

