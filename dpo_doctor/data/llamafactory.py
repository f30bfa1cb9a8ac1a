"""LLaMA-Factory's DPO tokenization (`--template NAME`), for runs it trained: its ids, not TRL's.

Rewritten from hiyouga/LLaMA-Factory (v0.9.5 wheel and main of 2026-08): `data/template.py` (`register_template`
defaults, `Template._encode`, `encode_oneturn`, `_convert_elements_to_ids`), `data/processor/pairwise.py`
(`PairwiseDatasetProcessor._encode_data_example`) and `data/processor/processor_utils.py` (`infer_seqlen`);
benchmarks/llamafactory_parity.py checks it id for id against LLaMA-Factory's own code. How it differs from TRL:

- every message is rendered through the template's slots and each slot is encoded ON ITS OWN with
  `tokenizer.encode(text, add_special_tokens=False)`; `{eos_token}` / `{bos_token}` slots are single ids. So no BOS
  unless the template asks for one, and no BPE merge across a slot boundary (TRL encodes prompt and
  prompt + response as whole strings and cuts at their common prefix);
- the first message also carries the prefix and the system slot (the row's system, else the template's default);
- the prompt is every encoded message but the last, the response the last one: `empty` appends NO EOS to it,
  `default` appends EOS and "\\n" (TRL appends EOS to standard responses);
- `cutoff_len` (here `--max-length`) is split between prompt and response by `infer_seqlen`, which cuts the prompt
  too: TRL keeps the prompt whole, cuts the responses, and drops pairs whose prompt alone fills `max_length`.

Two templates are written out: `empty` (what LLaMA-Factory uses when `template` is unset and the tokenizer has no
chat template) and `default`. A run trained with a model template (qwen, llama3, ...) is scored with TRL's
tokenization of the tokenizer's chat template; see README "Other trainers' data" for what that changes.
"""

from __future__ import annotations

from typing import Any

from dpo_doctor.data.tokens import PairTokens
from dpo_doctor.errors import UserError

EOS, BOS = "<eos_token>", "<bos_token>"  # stand-ins for LLaMA-Factory's {"eos_token"} / {"bos_token"} slots

TEMPLATES = {
    "empty": {"prefix": [], "system": ["{{content}}"], "user": ["{{content}}"], "assistant": ["{{content}}"],
              "default_system": "", "efficient_eos": False},
    "default": {"prefix": [], "system": ["System: {{content}}", EOS, "\n"],
                "user": ["Human: {{content}}", EOS, "\nAssistant:"], "assistant": ["{{content}}", EOS, "\n"],
                "default_system": "", "efficient_eos": False},
}


def check_template(name: str | None) -> None:
    if name is not None and name not in TEMPLATES:
        raise UserError(f"--template {name!r}: dpo-doctor reproduces LLaMA-Factory's {' and '.join(TEMPLATES)} "
                        "templates; for a model template (qwen, llama3, ...) leave --template out: the tokenizer's chat "
                        "template is used, as LLaMA-Factory does when its template is unset")


def slot_ids(tokenizer, slots: list[str], content: str = "") -> list[int]:
    """`_convert_elements_to_ids`: each string slot encoded alone, without special tokens."""
    ids: list[int] = []
    for slot in slots:
        if slot == EOS:
            ids.append(tokenizer.eos_token_id)
        elif slot == BOS:
            ids += [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        else:
            text = slot.replace("{{content}}", content)
            ids += tokenizer.encode(text, add_special_tokens=False) if text else []
    return ids


def encode_oneturn(tokenizer, template: str, messages: list[dict], system: str = "") -> tuple[list[int], list[int]]:
    """(prompt ids, response ids): every message through the template, the last one the response."""
    t = TEMPLATES[template]
    system = system or t["default_system"]
    encoded = []
    for i, m in enumerate(messages):
        ids = []
        if i == 0:
            ids += slot_ids(tokenizer, t["prefix"])
            if system:
                ids += slot_ids(tokenizer, t["system"], system)
        ids += slot_ids(tokenizer, t["user" if m["role"] == "user" else "assistant"], m["content"])
        encoded.append(ids)
    return [i for ids in encoded[:-1] for i in ids], encoded[-1]


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """How LLaMA-Factory splits `cutoff_len` between prompt (source) and response (target)."""
    if target_len * 2 < cutoff_len:  # a short response: only the prompt is cut
        max_target = cutoff_len
    elif source_len * 2 < cutoff_len:  # a short prompt: only the response is cut
        max_target = cutoff_len - source_len
    else:  # both long: in proportion
        max_target = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target = min(max_target, target_len)
    return min(max(cutoff_len - new_target, 0), source_len), new_target


def pair_ids(tokenizer, template: str, prompt: list[dict], chosen: str, rejected: str, system: str = "",
             cutoff_len: int | None = 2048) -> tuple[list[int], list[int], list[int]]:
    """(prompt, chosen, rejected) ids as LLaMA-Factory's pairwise processor builds them."""
    p, c = encode_oneturn(tokenizer, template, prompt + [{"role": "assistant", "content": chosen}], system)
    _, r = encode_oneturn(tokenizer, template, prompt + [{"role": "assistant", "content": rejected}], system)
    if TEMPLATES[template]["efficient_eos"]:
        c, r = c + [tokenizer.eos_token_id], r + [tokenizer.eos_token_id]
    if cutoff_len is None:
        return p, c, r
    source, target = infer_seqlen(len(p), max(len(c), len(r)), cutoff_len)
    return p[:source], c[:target], r[:target]


def _turns(value: Any, role: str) -> list[dict]:
    return [{"role": role, "content": value}] if isinstance(value, str) else list(value)


def tokenize_pair(tokenizer, template: str, prompt: Any, chosen: Any, rejected: Any,
                  cutoff_len: int | None) -> PairTokens:
    """A normalized (prompt, chosen, rejected) triple, strings or messages, tokenized as LLaMA-Factory does."""
    messages = _turns(prompt, "user")
    system = ""
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    answers = [_turns(chosen, "assistant"), _turns(rejected, "assistant")]
    if any(len(a) != 1 for a in answers):
        raise UserError("--template: LLaMA-Factory pairs have one answer message each; this row has several")
    ids = pair_ids(tokenizer, template, messages, answers[0][0]["content"], answers[1][0]["content"], system,
                   cutoff_len)
    return PairTokens(*map(tuple, ids))
