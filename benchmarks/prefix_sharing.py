"""Shared-prompt KV cache vs length-bucketed scoring: when does encoding the prompt once win?

Issue 8 asked to measure whether encoding each pair's prompt once and reusing its KV cache for chosen and rejected
beats the engine's approach (chosen and rejected as independent sequences, sorted by length, batched under a
token budget), and to keep it only if it does. This script times both engine paths on the same model and
pairs, from short prompts (the scan benchmarks' data, ~18% of the tokens) to long, multi-turn-like ones (~80%), and
says which one `score_pairs` picks by itself (`engine.prefix.PROMPT_SHARE_MIN`).

  bucketed : `score_pairs(..., prefix_sharing=False)`: chosen and rejected as independent, length-sorted rows.
  prefix   : `score_pairs(..., prefix_sharing=True)` (`engine.prefix`): prompts left-padded and run once with the
             KV cache on, the cache repeated for the two responses. Same sums (max |diff| printed).

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


def regime(work: Path, name: str, n_pairs: int, hidden: int, layers: int, prompt_words, response_words) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from dpo_doctor.data.pairs import load_pairs
    from dpo_doctor.engine import prefix
    from dpo_doctor.engine.pairs import PairScores, auto_token_budget, score_pairs

    (work / name).mkdir()
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
            ref = score_pairs(model, pairs, tok.pad_token_id, device, PairScores.empty(len(pairs)), budget,
                              prefix_sharing=False)
            times["bucketed"].append(time.perf_counter() - t)
            t = time.perf_counter()
            shared = score_pairs(model, pairs, tok.pad_token_id, device, PairScores.empty(len(pairs)), budget,
                                 prefix_sharing=True)
            times["prefix"].append(time.perf_counter() - t)
    diff = max(np.abs(shared.logp_chosen - ref.logp_chosen).max(), np.abs(shared.logp_rejected - ref.logp_rejected).max())
    prompt = sum(len(p.prompt_ids) for p in pairs)
    resp = sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    best = {k: round(min(v), 3) for k, v in times.items()}
    return {"prompt_tokens_share": round(2 * prompt / (2 * prompt + resp), 3),
            "mean_prompt_tokens": round(prompt / len(pairs), 1),
            "mean_response_tokens": round(resp / (2 * len(pairs)), 1), "seconds": best,
            "prefix_over_bucketed": round(best["prefix"] / best["bucketed"], 3),
            "max_abs_logp_diff": float(diff),
            "auto_picks": "prefix" if prefix.prompt_share(pairs) >= prefix.PROMPT_SHARE_MIN else "bucketed"}


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
               "medium_prompts": regime(Path(work), "medium", a.pairs, a.hidden, a.layers, (40, 90), (16, 80)),
               "balanced_prompts": regime(Path(work), "balanced", a.pairs, a.hidden, a.layers, (80, 160), (16, 80)),
               "long_prompts": regime(Path(work), "long", a.pairs, a.hidden, a.layers, (150, 300), (16, 80))}
    print(json.dumps({"benchmark": "prefix_sharing", "date": time.strftime("%Y-%m-%d %H:%M"),
                      "device": "cpu, 1 torch thread", "pairs": a.pairs, **res,
                      "loadavg_before_after": [before, common.loadavg()]}))


if __name__ == "__main__":
    main()
