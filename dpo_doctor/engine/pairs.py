"""Score preference pairs: summed response log-probs of chosen and rejected under one model.

Chosen and rejected sequences are flattened and sorted by length, then cut into batches under a token budget
(length bucketing), so padding stays small; each batch is one forward pass mixing both sides. When prompts
dominate the tokens, each prompt is instead encoded once for both responses (`engine.prefix`). Results land in
caller-owned arrays, so an interrupt keeps every finished batch (the caller caches partial results, NaN = not yet
scored) and a re-run scores only what is missing. On CUDA an out-of-memory halves the budget and retries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from dpo_doctor.engine import prefix
from dpo_doctor.engine.logprobs import PairTokens, sequence_logps


@dataclass
class PairScores:
    """Per pair: summed response log-probs (float64, NaN = not scored yet) and response token counts."""

    logp_chosen: np.ndarray
    logp_rejected: np.ndarray
    len_chosen: np.ndarray
    len_rejected: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "PairScores":
        nan = np.full(n, np.nan)
        return cls(nan.copy(), nan.copy(), np.zeros(n, np.int64), np.zeros(n, np.int64))

    @property
    def complete(self) -> bool:
        return not (np.isnan(self.logp_chosen).any() or np.isnan(self.logp_rejected).any())

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ("logp_chosen", "logp_rejected", "len_chosen", "len_rejected")}


@dataclass
class HiddenSums:
    """Per pair: summed last-layer hidden states of the response positions (`logprobs.response_hidden_sums`),
    (n, H) float64, NaN = not scored yet. Filled by the same forward pass as the log-probs (CHES needs them)."""

    chosen: np.ndarray
    rejected: np.ndarray

    @classmethod
    def empty(cls, n: int, hidden_size: int) -> "HiddenSums":
        nan = np.full((n, hidden_size), np.nan)
        return cls(nan.copy(), nan.copy())


def auto_token_budget(model, device: torch.device) -> int:
    """Tokens per forward pass. The (tokens, vocab) logits dominate activation memory for small models.

    CPU: small batches win (measured with benchmarks/scan_throughput.py's setup, 6.6M-param Llama, 1 thread: a
    16,384-token budget took 32.8 s, 4,096 took 19.5 s, 2,048 took 18.9 s: large activations fall out of cache), and
    float32 logits stay under ~1 GB. CUDA: a quarter of free memory divided by the bytes one
    token costs in logits (x3 for the float32 logsumexp chunk and the gather) plus hidden states per layer."""
    cfg = model.config
    vocab = int(getattr(cfg, "vocab_size", 32000))
    if device.type != "cuda":
        return int(max(256, min(2048, 2.5e8 / vocab)))
    free, _ = torch.cuda.mem_get_info(device)
    hidden = int(getattr(cfg, "hidden_size", 1024)) * int(getattr(cfg, "num_hidden_layers", 12))
    per_token = vocab * 2 * 3 + hidden * 2 * 4
    return int(max(256, min(262144, free * 0.25 / per_token)))


def _batches(lengths: Sequence[int], order: Sequence[int], budget: int, max_rows: int):
    """Greedy cut of the length-sorted order: rows x longest <= budget (always at least one row)."""
    batch: list[int] = []
    longest = 0
    for i in order:
        new_longest = max(longest, lengths[i])
        if batch and (new_longest * (len(batch) + 1) > budget or len(batch) >= max_rows):
            yield batch
            batch, new_longest = [], lengths[i]
        batch.append(i)
        longest = new_longest
    if batch:
        yield batch


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def score_pairs(model, pairs: Sequence[PairTokens], pad_id: int, device: torch.device, out: PairScores,
                token_budget: int | None = None, max_rows: int = 256,
                progress: Callable[[int], None] | None = None, prefix_sharing: bool | None = None,
                hidden: HiddenSums | None = None) -> PairScores:
    """Fill `out` with summed response log-probs for every pair whose entry is still NaN.

    prefix_sharing: encode each prompt once for both responses (`engine.prefix`); None = automatically, when the
    model family supports it and prompts are at least `prefix.PROMPT_SHARE_MIN` of the tokens to score. Pairs with
    only one side left to score (a resumed run) or an empty prompt always take the bucketed path.
    hidden: also fill these summed response hidden states, from the same forward pass (one pass per sequence,
    nothing more); the bucketed path is used then."""
    budget = token_budget or auto_token_budget(model, device)
    both = [i for i in range(len(pairs)) if math.isnan(out.logp_chosen[i]) and math.isnan(out.logp_rejected[i])
            and pairs[i].prompt_ids]  # an empty prompt has nothing to share (and no logits for the first token)
    if hidden is not None:
        prefix_sharing = False
    if prefix_sharing is None:
        prefix_sharing = prefix.supports_prefix_sharing(model) and \
            prefix.prompt_share([pairs[i] for i in both]) >= prefix.PROMPT_SHARE_MIN
    if prefix_sharing and both:
        def run_pairs(batch: list[int]) -> int:
            c, r, nc, nr = prefix.score_pair_batch(model, [pairs[i] for i in batch], pad_id, device)
            out.logp_chosen[batch], out.logp_rejected[batch] = c.numpy(), r.numpy()
            out.len_chosen[batch], out.len_rejected[batch] = nc.numpy(), nr.numpy()
            return 2 * len(batch)

        _run_with_backoff(list(prefix.pair_batches(pairs, both, budget, max_rows)), run_pairs, device, progress)

    seqs: list[tuple[int, str, list[int], int]] = []  # (pair index, side, ids, prompt length)
    for i, p in enumerate(pairs):
        for side, resp in (("chosen", p.chosen_ids), ("rejected", p.rejected_ids)):
            if math.isnan(getattr(out, f"logp_{side}")[i]):
                seqs.append((i, side, list(p.prompt_ids) + list(resp), len(p.prompt_ids)))
    lengths = [len(s[2]) for s in seqs]
    order = sorted(range(len(seqs)), key=lambda j: -lengths[j])  # longest first: an OOM shows up at once

    def run_seqs(batch: list[int]) -> int:
        _score_batch(model, [seqs[j] for j in batch], pad_id, device, out, hidden)
        return len(batch)

    _run_with_backoff(list(_batches(lengths, order, budget, max_rows)), run_seqs, device, progress)
    return out


def _run_with_backoff(pending: list[list[int]], run: Callable[[list[int]], int], device: torch.device,
                      progress: Callable[[int], None] | None) -> None:
    """run(batch) for each batch, longest first; on a CUDA out-of-memory the batch is split in two and retried."""
    while pending:
        batch = pending.pop(0)
        try:
            n = run(batch)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if device.type != "cuda" or not _is_oom(exc) or len(batch) == 1:
                raise
            torch.cuda.empty_cache()
            half = len(batch) // 2
            pending[:0] = [batch[:half], batch[half:]]
            continue
        if progress:
            progress(n)


@torch.inference_mode()
def _score_batch(model, rows, pad_id: int, device: torch.device, out: PairScores,
                 hidden: HiddenSums | None = None) -> None:
    width = max(len(r[2]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    comp = torch.zeros((len(rows), width), dtype=torch.long)
    for k, (_, _, seq, n_prompt) in enumerate(rows):
        ids[k, : len(seq)] = torch.tensor(seq)
        attn[k, : len(seq)] = 1
        comp[k, n_prompt: len(seq)] = 1
    scored = sequence_logps(model, ids.to(device), attn.to(device), comp.to(device), hidden_sums=hidden is not None)
    logps, n = scored[0].double().cpu().numpy(), scored[1].long().cpu().numpy()
    sums = scored[2].cpu().numpy() if hidden is not None else None  # (B, H) float64
    for k, (i, side, _, _) in enumerate(rows):
        getattr(out, f"logp_{side}")[i] = logps[k]
        getattr(out, f"len_{side}")[i] = n[k]
        if sums is not None:
            getattr(hidden, side)[i] = sums[k]
