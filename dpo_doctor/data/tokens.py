"""The tokenized pair type and prompt encoding: data's output, the engine's input (as plain token ids)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PairTokens:
    """One tokenized pair: prompt ids shared by both responses (already truncated as TRL does)."""

    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]


def prompt_token_ids(tokenizer, prompt: str | list[dict]) -> list[int]:
    """Prompt ids exactly as the pairs are tokenized: chat template with generation prompt for conversations,
    the plain tokenizer otherwise."""
    from dpo_doctor.data.pairs import _ids

    if isinstance(prompt, list):
        return _ids(tokenizer, prompt, add_generation_prompt=True)
    return _ids(tokenizer, prompt)


def encode_prompts(tokenizer, prompts: list[Any]) -> list[list[int]]:
    """Every probe prompt as token ids (what `engine.generate.sample` takes)."""
    return [prompt_token_ids(tokenizer, p) for p in prompts]
