"""Score pairs with each prompt encoded once: its KV cache serves both chosen and rejected.

A pass over [prompt + chosen, prompt + rejected] reads the prompt twice. Here the prompts of a batch are left-padded
and run once with the KV cache on; the cache is repeated for the two responses, which run right-padded with
explicit positions; the prompt's last logits score each response's first token. Same sums as the bucketed path.

It wins only when prompts dominate the tokens. Measured with benchmarks/prefix_sharing.py (1 CPU thread, 8M-param
Llama), time relative to the length-bucketed path at a prompt share of 0.18 / 0.57 / 0.69 / 0.82: 1.33x / 1.09x /
1.04x / 0.81x (chosen and rejected of a pair must share a batch, so response padding grows, and the cached keys
still cost attention). `engine.pairs.score_pairs` picks it automatically at `PROMPT_SHARE_MIN` and above, for model
families known to take explicit positions with a plain KV cache.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from dpo_doctor.engine.compat import cache_kwargs, keep_kwargs, output_cache
from dpo_doctor.engine.logprobs import PLAIN_HEAD_TYPES, PairTokens, token_logps

# Share of all tokens (each prompt counted twice, as the bucketed path reads it) above which prefix sharing is used.
# The measured crossover lies between 0.69 (1.04x the bucketed time) and 0.82 (0.81x): see benchmarks/README.md.
PROMPT_SHARE_MIN = 0.75


def supports_prefix_sharing(model) -> bool:
    cfg = getattr(model, "config", None)
    # the plain-head families are also decoders with rotary positions from `position_ids` and a DynamicCache;
    # a sliding-window cache would drop keys, so those configs are left out
    if getattr(cfg, "model_type", None) not in PLAIN_HEAD_TYPES:
        return False
    sliding = getattr(cfg, "sliding_window", None)
    return not sliding or getattr(cfg, "use_sliding_window", True) is False


def prompt_share(pairs: Sequence[PairTokens]) -> float:
    """Fraction of the tokens a bucketed pass reads that are prompt tokens (0 for no pairs)."""
    prompt = sum(2 * len(p.prompt_ids) for p in pairs)
    total = prompt + sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    return prompt / total if total else 0.0


def pair_batches(pairs: Sequence[PairTokens], indices: Sequence[int], budget: int,
                 max_rows: int) -> Iterator[list[int]]:
    """Pairs sorted longest first, cut greedily so pairs x (prompt + 2 x longer response) stays under `budget`."""
    def cost(i: int) -> int:
        p = pairs[i]
        return len(p.prompt_ids) + 2 * max(len(p.chosen_ids), len(p.rejected_ids))

    batch: list[int] = []
    longest = 0
    for i in sorted(indices, key=lambda i: -cost(i)):
        new_longest = max(longest, cost(i))
        if batch and (new_longest * (len(batch) + 1) > budget or 2 * (len(batch) + 1) > max_rows):
            yield batch
            batch, new_longest = [], cost(i)
        batch.append(i)
        longest = new_longest
    if batch:
        yield batch


@torch.inference_mode()
def score_pair_batch(model, pairs: Sequence[PairTokens], pad_id: int,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(chosen logp sums, rejected logp sums, chosen lengths, rejected lengths), each (B,) float64 on the CPU."""
    width = max(len(p.prompt_ids) for p in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    pmask = torch.zeros((len(pairs), width), dtype=torch.long)
    for k, p in enumerate(pairs):  # left-padded: every prompt ends in the last column
        ids[k, width - len(p.prompt_ids):] = torch.tensor(p.prompt_ids)
        pmask[k, width - len(p.prompt_ids):] = 1
    out = model(input_ids=ids.to(device), attention_mask=pmask.to(device),
                position_ids=(pmask.cumsum(1) - 1).clamp(min=0).to(device), use_cache=True, **keep_kwargs(model, 1))
    cache = output_cache(out)
    cache.batch_repeat_interleave(2)  # rows: pair 0 chosen, pair 0 rejected, pair 1 chosen, ...
    last = out.logits[:, -1].repeat_interleave(2, dim=0)  # (2B, V): predicts each response's first token

    resp = [r for p in pairs for r in (p.chosen_ids, p.rejected_ids)]
    rwidth = max(max(len(r) for r in resp), 1)
    rids = torch.full((len(resp), rwidth), pad_id, dtype=torch.long)
    rmask = torch.zeros((len(resp), rwidth), dtype=torch.long)
    for k, r in enumerate(resp):
        rids[k, : len(r)] = torch.tensor(r, dtype=torch.long)
        rmask[k, : len(r)] = 1
    rids, rmask = rids.to(device), rmask.to(device)
    plen = pmask.sum(1).repeat_interleave(2).to(device)  # (2B,)
    logits = model(input_ids=rids, attention_mask=torch.cat([pmask.to(device).repeat_interleave(2, dim=0), rmask], 1),
                   position_ids=plen[:, None] + torch.arange(rwidth, device=device)[None, :], use_cache=False,
                   **cache_kwargs(model, cache)).logits  # (2B, R, V)
    first = token_logps(last[:, None].to(logits.device), rids[:, :1].to(logits.device))[:, 0] * rmask[:, 0]
    rest = (token_logps(logits[:, :-1], rids[:, 1:].to(logits.device)) * rmask[:, 1:].to(logits.device)).sum(1)
    sums = (first.to(rest.device) + rest).double().cpu()
    lens = rmask.sum(1).cpu()
    return sums[0::2], sums[1::2], lens[0::2], lens[1::2]
