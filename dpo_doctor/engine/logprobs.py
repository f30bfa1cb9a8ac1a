"""Log-probabilities of responses: the one function the scanner and the trainer share.

`sequence_logps` is shared by the scanner and the built-in trainer, so the two can never disagree on
masking or sums. `score_pairs` runs chosen and rejected of a batch in one forward pass, in batches bucketed
by length so that padding stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

# Rows of logits upcast at a time: bounds the float32 copy to (chunk, T, V) instead of (B, T, V).
_LOGSUMEXP_ROWS = 4


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under softmax(logits), without a full float32 log-softmax over the vocabulary.

    logits (B, T, V) in any float dtype, targets (B, T) int64 -> (B, T) float32.
    log_softmax(x)[y] = x[y] - logsumexp(x); the logsumexp is taken in float32 a few rows at a time.
    """
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).float()  # (B, T)
    lse = torch.cat([torch.logsumexp(chunk.float(), dim=-1) for chunk in logits.split(_LOGSUMEXP_ROWS)])
    return picked - lse  # (B, T)


def sequence_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   completion_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of the completion tokens of each row, and their count.

    input_ids, attention_mask, completion_mask: (B, T), right-padded; completion_mask is 1 on response tokens.
    Token t is predicted from positions < t, so logits[:, :-1] score input_ids[:, 1:] (as TRL does).
    Returns (logp_sum (B,), n_tokens (B,)). Differentiable: the trainer calls this with gradients on.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits  # (B, T, V)
    per_token = token_logps(logits[:, :-1], input_ids[:, 1:])  # (B, T-1)
    mask = completion_mask[:, 1:].to(per_token.dtype)  # (B, T-1)
    return (per_token * mask).sum(dim=1), mask.sum(dim=1)


@dataclass(frozen=True)
class PairTokens:
    """One tokenized pair: prompt ids shared by both responses (already truncated as TRL does)."""

    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]


def collate_pairs(pairs: Sequence[PairTokens], pad_id: int, max_length: int | None = None) -> dict[str, torch.Tensor]:
    """TRL's collation: rows [chosen_1..chosen_B, rejected_1..rejected_B], prompt+response, keep_start truncation,
    right padding. Returns input_ids, attention_mask, completion_mask, each (2B, T)."""
    seqs, masks = [], []
    for side in ("chosen_ids", "rejected_ids"):
        for p in pairs:
            ids = list(p.prompt_ids) + list(getattr(p, side))
            mask = [0] * len(p.prompt_ids) + [1] * len(getattr(p, side))
            if max_length is not None:
                ids, mask = ids[:max_length], mask[:max_length]
            seqs.append(ids)
            masks.append(mask)
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    completion = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention[i, : len(s)] = 1
        completion[i, : len(m)] = torch.tensor(m, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention, "completion_mask": completion}


def pair_logps(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chosen and rejected of a collated batch in one forward pass.

    Returns (chosen_logps, rejected_logps, chosen_lens, rejected_lens), each (B,)."""
    logps, n = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    chosen, rejected = logps.chunk(2)
    n_chosen, n_rejected = n.chunk(2)
    return chosen, rejected, n_chosen, n_rejected
