"""An optional judge (`--judge SPEC`) that scores answers, for a quality signal that is not the policy's own.

SPEC is either a local folder holding a reward model (an `AutoModelForSequenceClassification` with one output, or
two: then the score is logit[1] - logit[0]), loaded from safetensors only and with the model's own code only under
`--trust-remote-code`; or `module:function`, a user callable `(prompts: list[str], completions: list[str]) ->
list[float]` importable from the current environment (that is the user's code: naming it is consent to run it).
A reward model sees the prompt and answer through its tokenizer's chat template when it has one (user turn,
assistant turn), else the prompt followed by the answer. Higher scores mean better answers.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from dpo_doctor.errors import UserError

Scorer = Callable[[list[str], list[str]], list[float]]
CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Judge:
    spec: str
    score: Scorer  # (prompts, completions) -> one float per pair, higher is better


def _from_callable(spec: str) -> Judge:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"--judge {spec}: cannot import module {module_name!r} ({exc}); pass module:function of an "
                        f"importable module, or a folder with a reward model") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"--judge {spec}: {module_name} has no callable {attr!r}; expected "
                        f"def {attr}(prompts: list[str], completions: list[str]) -> list[float]")

    def score(prompts: list[str], completions: list[str]) -> list[float]:
        out = [float(v) for v in fn(list(prompts), list(completions))]
        if len(out) != len(prompts):
            raise UserError(f"--judge {spec}: returned {len(out)} scores for {len(prompts)} answers; return one "
                            f"float per (prompt, completion)")
        return out

    return Judge(spec, score)


def _texts(tokenizer, prompts: Sequence[str], completions: Sequence[str]) -> list[str]:
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": c}],
                                              tokenize=False) for p, c in zip(prompts, completions)]
    return [p + c for p, c in zip(prompts, completions)]


def _from_folder(path: Path, device, trust_remote_code: bool, batch_size: int, max_length: int) -> Judge:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not any(path.glob("*.safetensors")):
        raise UserError(f"--judge {path}: no .safetensors weights in the folder; dpo-doctor loads reward models "
                        f"from safetensors only (convert with save_pretrained(..., safe_serialization=True))")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=True, trust_remote_code=trust_remote_code, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"--judge {path}: not a loadable sequence-classification reward model "
                        f"({str(exc).splitlines()[0][:160]})") from None
    if model.config.num_labels not in (1, 2):
        raise UserError(f"--judge {path}: the model has {model.config.num_labels} outputs; a reward model has 1 "
                        f"(a score) or 2 (bad/good logits)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device).eval()

    @torch.no_grad()
    def score(prompts: list[str], completions: list[str]) -> list[float]:
        texts, out = _texts(tokenizer, prompts, completions), []
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start: start + batch_size], return_tensors="pt", padding=True, truncation=True,
                            max_length=max_length).to(device)
            logits = model(**enc).logits.float()  # (B, num_labels)
            values = logits[:, 0] if logits.shape[-1] == 1 else logits[:, 1] - logits[:, 0]  # (B,)
            out += values.tolist()
        return out

    return Judge(str(path), score)


def load_judge(spec: str, device, trust_remote_code: bool = False, batch_size: int = 8,
               max_length: int = 2048) -> Judge:
    """A reward-model folder or `module:function` (see the module docstring); errors are one-line UserErrors."""
    path = Path(spec)
    if path.is_dir():
        return _from_folder(path, device, trust_remote_code, batch_size, max_length)
    if CALLABLE.match(spec):
        return _from_callable(spec)
    raise UserError(f"--judge {spec}: neither a folder with a reward model nor module:function "
                    f"(e.g. --judge models/rm or --judge my_judges:score)")
