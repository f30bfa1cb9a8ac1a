"""Shared-prompt KV cache vs the engine's length-bucketed scoring: does encoding the prompt once win?

Issue 8 asked to measure whether encoding each pair's prompt once and reusing its KV cache for chosen and rejected
beats the engine's approach (chosen and rejected as independent sequences, sorted by length, batched under a
token budget), and to keep it only if it does. This script implements prefix sharing for real and times both on
the same model and pairs, in two regimes: short prompts (the scan benchmarks' data, prompt ~15% of a sequence) and
long prompts (multi-turn-like, prompt ~70% of a sequence).

  bucketed : `dpo_doctor.engine.pairs.score_pairs` (what `dpo-doctor scan` runs).
  prefix   : pairs sorted by length and batched under the same token budget; prompts left-padded and run once
             with use_cache=True; the cache repeated for the two responses (right-padded, explicit position ids);
             the prompt's last logits score the first response token. Same sums (checked: max |diff| printed).

One torch thread, each regime timed twice in alternation and the best kept. Prints ONE JSON line.

usage: python benchmarks/prefix_sharing.py [--pairs 96] [--hidden 320] [--layers 6]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402


def prefix_scores(model, pairs, pad_id: int, budget: int) -> tuple[list[float], list[float]]:
    """Summed response log-probs of chosen and rejected per pair, the prompt encoded once per pair."""
    import torch

    from dpo_doctor.engine.logprobs import token_logps

    order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i].prompt_ids) + max(len(pairs[i].chosen_ids),
                                                                                        len(pairs[i].rejected_ids))))
    chosen, rejected = [0.0] * len(pairs), [0.0] * len(pairs)
    batch: list[int] = []

    def run(batch: list[int]) -> None:
        ps = [pairs[i] for i in batch]
        P = max(len(p.prompt_ids) for p in ps)
        ids = torch.full((len(ps), P), pad_id)
        pmask = torch.zeros((len(ps), P), dtype=torch.long)
        for k, p in enumerate(ps):  # left-pad prompts: every prompt ends at column P-1
            ids[k, P - len(p.prompt_ids):] = torch.tensor(p.prompt_ids)
            pmask[k, P - len(p.prompt_ids):] = 1
        ppos = (pmask.cumsum(1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=pmask, position_ids=ppos, use_cache=True)
        cache = out.past_key_values
        cache.batch_repeat_interleave(2)  # rows: pair0 chosen, pair0 rejected, pair1 chosen, ...
        last = out.logits[:, -1].repeat_interleave(2, dim=0)  # (2B, V): predicts each response's first token
        resp = [r for p in ps for r in (p.chosen_ids, p.rejected_ids)]
        R = max(len(r) for r in resp)
        rids = torch.full((len(resp), R), pad_id)
        rmask = torch.zeros((len(resp), R), dtype=torch.long)
        for k, r in enumerate(resp):
            rids[k, : len(r)] = torch.tensor(r)
            rmask[k, : len(r)] = 1
        plen = pmask.sum(1).repeat_interleave(2)  # (2B,)
        rpos = plen[:, None] + torch.arange(R)[None, :]
        full_mask = torch.cat([pmask.repeat_interleave(2, dim=0), rmask], dim=1)
        logits = model(input_ids=rids, attention_mask=full_mask, position_ids=rpos, past_key_values=cache,
                       use_cache=False).logits  # (2B, R, V)
        first = token_logps(last[:, None], rids[:, :1])[:, 0]  # (2B,)
        rest = (token_logps(logits[:, :-1], rids[:, 1:]) * rmask[:, 1:]).sum(1)  # (2B,)
        total = (first + rest).double().tolist()
        for k, i in enumerate(batch):
            chosen[i], rejected[i] = total[2 * k], total[2 * k + 1]

    longest = 0
    for i in order:
        p = pairs[i]
        cost = len(p.prompt_ids) + 2 * max(len(p.chosen_ids), len(p.rejected_ids))
        new_longest = max(longest, cost)
        if batch and new_longest * (len(batch) + 1) > budget:
            run(batch)
            batch, new_longest = [], cost
        batch.append(i)
        longest = new_longest
    if batch:
        run(batch)
    return chosen, rejected


def regime(work: Path, name: str, n_pairs: int, hidden: int, layers: int, prompt_words, response_words) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from dpo_doctor.data import load_pairs
    from dpo_doctor.engine.pairs import PairScores, auto_token_budget, score_pairs

    s = common.build(work / name, n_pairs, 1, hidden=hidden, layers=layers, prompt_words=prompt_words,
                     response_words=response_words)
    tok = PreTrainedTokenizerFast.from_pretrained(s.ref)
    pairs = load_pairs(Path(s.data), tok, max_length=1024).tokens
    model = AutoModelForCausalLM.from_pretrained(s.ref).eval()
    device = torch.device("cpu")
    budget = auto_token_budget(model, device)
    times = {"bucketed": [], "prefix": []}
    with torch.inference_mode():
        for _ in range(2):
            t = time.perf_counter()
            ref = score_pairs(model, pairs, tok.pad_token_id, device, PairScores.empty(len(pairs)), budget)
            times["bucketed"].append(time.perf_counter() - t)
            t = time.perf_counter()
            c, r = prefix_scores(model, pairs, tok.pad_token_id, budget)
            times["prefix"].append(time.perf_counter() - t)
    diff = max(np.abs(np.array(c) - ref.logp_chosen).max(), np.abs(np.array(r) - ref.logp_rejected).max())
    prompt = sum(len(p.prompt_ids) for p in pairs)
    resp = sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    best = {k: round(min(v), 3) for k, v in times.items()}
    return {"prompt_tokens_share": round(2 * prompt / (2 * prompt + resp), 3),
            "mean_prompt_tokens": round(prompt / len(pairs), 1),
            "mean_response_tokens": round(resp / (2 * len(pairs)), 1), "seconds": best,
            "prefix_over_bucketed": round(best["prefix"] / best["bucketed"], 3),
            "max_abs_logp_diff": float(diff)}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--hidden", type=int, default=320)
    ap.add_argument("--layers", type=int, default=6)
    a = ap.parse_args()
    torch.set_num_threads(1)
    before = common.loadavg()
    with tempfile.TemporaryDirectory() as work:
        res = {"short_prompts": regime(Path(work), "short", a.pairs, a.hidden, a.layers, (8, 24), (16, 140)),
               "long_prompts": regime(Path(work), "long", a.pairs, a.hidden, a.layers, (150, 300), (16, 80))}
    print(json.dumps({"benchmark": "prefix_sharing", "date": time.strftime("%Y-%m-%d %H:%M"),
                      "device": "cpu, 1 torch thread", "pairs": a.pairs, **res,
                      "loadavg_before_after": [before, common.loadavg()]}))


if __name__ == "__main__":
    main()
