"""Tokenization: the tokenized pair type (data's output, the engine's input as plain token ids), TRL's pair
tokenization and truncation, and prompt encoding for the generation probes. Imports nothing else of data/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PairTokens:
    """One tokenized pair: prompt ids shared by both responses (already truncated as TRL does)."""

    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]


def token_ids(tokenizer, value: Any, **kwargs) -> list[int]:
    """Ids of a string (the plain tokenizer, adding special tokens as it does) or of a message list (the chat
    template; `kwargs` such as add_generation_prompt go to it)."""
    if isinstance(value, list):
        out = tokenizer.apply_chat_template(value, tokenize=True, return_dict=True, **kwargs)
        return list(out["input_ids"])
    return list(tokenizer(text=value)["input_ids"])


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_pair(tokenizer, prompt: Any, chosen: Any, rejected: Any) -> PairTokens:
    """TRL 1.x `tokenize_fn`: completion = what follows the common prefix of prompt and prompt+completion."""
    if isinstance(prompt, list):
        prompt_ids = token_ids(tokenizer, prompt, add_generation_prompt=True)
        chosen_full = token_ids(tokenizer, prompt + chosen)
        rejected_full = token_ids(tokenizer, prompt + rejected)
    else:
        eos = tokenizer.eos_token or ""
        chosen = chosen if chosen.endswith(eos) else chosen + eos
        rejected = rejected if rejected.endswith(eos) else rejected + eos
        prompt_ids = token_ids(tokenizer, prompt)
        chosen_full = token_ids(tokenizer, prompt + chosen)
        rejected_full = token_ids(tokenizer, prompt + rejected)
    n = min(common_prefix(prompt_ids, chosen_full), common_prefix(prompt_ids, rejected_full))
    return PairTokens(tuple(prompt_ids[:n]), tuple(chosen_full[n:]), tuple(rejected_full[n:]))


def truncate(pair: PairTokens, max_length: int | None) -> PairTokens | None:
    """keep_start truncation of prompt+response to max_length (TRL's collator); None if the prompt fills it."""
    if max_length is None:
        return pair
    if len(pair.prompt_ids) >= max_length:
        return None
    room = max_length - len(pair.prompt_ids)
    return PairTokens(pair.prompt_ids, pair.chosen_ids[:room], pair.rejected_ids[:room])


def prompt_token_ids(tokenizer, prompt: str | list[dict]) -> list[int]:
    """Prompt ids exactly as the pairs are tokenized: chat template with generation prompt for conversations,
    the plain tokenizer otherwise."""
    if isinstance(prompt, list):
        return token_ids(tokenizer, prompt, add_generation_prompt=True)
    return token_ids(tokenizer, prompt)


def encode_prompts(tokenizer, prompts: list[Any]) -> list[list[int]]:
    """Every probe prompt as token ids (what `engine.generate.sample` takes)."""
    return [prompt_token_ids(tokenizer, p) for p in prompts]
