"""Generation throughput: new tokens/s of `engine.generate.sample` vs a plain `model.generate` loop.

Same model (a ~4M-parameter tiny Llama, untrained), same prompts, same batches (left-padded, batch_size rows),
same settings (temperature 1, top-p 1, max_new_tokens, stop at EOS), one CPU thread. New tokens count every
generated token up to and including EOS. Best of `--repeats` timed runs after one warm-up each.
Prints one JSON line.

    python benchmarks/generation_throughput.py [--prompts 32] [--samples 4] [--max-new-tokens 64] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from dpo_doctor.zoo import tiny  # noqa: E402
from dpo_doctor.engine.generate import GenConfig, _left_pad, sample  # noqa: E402
from dpo_doctor.data.tokens import encode_prompts, prompt_token_ids  # noqa: E402

WORDS = "the cat dog sat ran on under a mat log red blue big small quick slow what why how yes no".split()


def _prompts(n: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(4 + i % 9)) + "?" for i in range(n)]


def _time(fn, repeats: int) -> tuple[float, int]:
    fn()  # warm-up
    best, tokens = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = fn()
        best = min(best, time.perf_counter() - start)
    return best, tokens


def _hf_loop(model, tok, prompts, cfg: GenConfig) -> int:
    """The baseline: model.generate over the same left-padded batches, counting new tokens through EOS."""
    rows = [prompt_token_ids(tok, p) for p in prompts for _ in range(cfg.samples_per_prompt)]
    rows.sort(key=len)
    torch.manual_seed(cfg.seed)
    n_new = 0
    for start in range(0, len(rows), cfg.batch_size):
        ids, mask = _left_pad(rows[start: start + cfg.batch_size], tok.pad_token_id)
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=mask, do_sample=True, temperature=cfg.temperature,
                                 top_p=cfg.top_p, top_k=0, max_new_tokens=cfg.max_new_tokens,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        new = out[:, ids.shape[1]:]
        for row in new.tolist():
            n_new += next((i + 1 for i, t in enumerate(row) if t == tok.eos_token_id), len(row))
    return n_new


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    prompts = _prompts(args.prompts)
    tok = tiny.build_tokenizer(prompts * 4, vocab_size=512)
    model = tiny.build_model(tok, hidden=256, layers=6, heads=4, seed=0)
    cfg = GenConfig(samples_per_prompt=args.samples, max_new_tokens=args.max_new_tokens, greedy=False,
                    batch_size=args.batch_size)
    ours_s, ours_tok = _time(lambda: sum(len(s.token_ids) for s in sample(model, tok, encode_prompts(tok, prompts), cfg, "cpu")),
                             args.repeats)
    hf_s, hf_tok = _time(lambda: _hf_loop(model, tok, prompts, cfg), args.repeats)
    print(json.dumps({
        "benchmark": "generation_throughput", "device": "cpu", "threads": 1,
        "params": sum(p.numel() for p in model.parameters()), "rows": args.prompts * args.samples,
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "sample_new_tokens": ours_tok, "sample_tokens_per_s": round(ours_tok / ours_s, 1),
        "hf_generate_new_tokens": hf_tok, "hf_generate_tokens_per_s": round(hf_tok / hf_s, 1),
        "speedup": round((ours_tok / ours_s) / (hf_tok / hf_s), 3),
    }))


if __name__ == "__main__":
    main()
