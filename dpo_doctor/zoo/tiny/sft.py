"""The zoo's reference: a tiny Llama SFT-trained on the task with plain NLL, cached on disk.

The NLL is the negative of `dpo_doctor.engine.sequence_logps` (the log-prob function the trainer and scanner share)
divided by the response token count, so all three agree on masking. A few hundred AdamW steps on CPU take seconds.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from dpo_doctor.zoo.tiny import models as tiny
from dpo_doctor.data.tokens import PairTokens
from dpo_doctor.engine.logprobs import collate_pairs, sequence_logps
from dpo_doctor.zoo.tiny import task

SFT_VERSION = 2  # bump when the task or the recipe changes: invalidates cached references


def corpus_for_tokenizer() -> list[str]:
    """Every kind of text the task produces, so the BPE covers prompts and responses."""
    return [p + r + "<|eos|>" for p, r in task.sft_texts(seed=12345, n=3000)]


def tokenize(tokenizer, prompt: str, resp: str) -> PairTokens:
    """Prompt and response ids the way `dpo_doctor.data.pairs` tokenizes standard rows (EOS appended to the response)."""
    from dpo_doctor.data.pairs import tokenize_pair

    return tokenize_pair(tokenizer, prompt, resp, resp)


def train_reference(out: Path, seed: int = 0, steps: int = 300, batch_size: int = 32, lr: float = 3e-3,
                    hidden: int = 64, layers: int = 2) -> Path:
    """SFT a tiny Llama on the task and save it to `out` (reused when the settings file matches)."""
    settings = {"version": SFT_VERSION, "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
                "hidden": hidden, "layers": layers}
    stamp = out / "zoo_sft.json"
    if stamp.exists() and json.loads(stamp.read_text()) == settings and (out / "model.safetensors").exists():
        return out
    torch.manual_seed(seed)
    tokenizer = tiny.build_tokenizer(corpus_for_tokenizer(), vocab_size=384)
    model = tiny.build_model(tokenizer, hidden=hidden, layers=layers, heads=4, seed=seed).train()
    data = [tokenize(tokenizer, p, r) for p, r in task.sft_texts(seed=seed, n=steps * batch_size // 4)]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = random.Random(seed)
    for step in range(steps):
        batch = collate_pairs(rng.sample(data, batch_size), tokenizer.pad_token_id)
        half = batch_size  # collate_pairs stacks chosen then rejected (identical here): keep the first half
        logp, n = sequence_logps(model, batch["input_ids"][:half], batch["attention_mask"][:half],
                                 batch["completion_mask"][:half])
        loss = -(logp.sum() / n.sum())  # mean NLL per response token
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        for g in opt.param_groups:
            g["lr"] = lr * (1 - (step + 1) / steps)  # linear decay
    model.eval()
    tiny.save(model, tokenizer, out)
    stamp.write_text(json.dumps(settings, indent=2, sort_keys=True))
    (out / "zoo_sft_log.json").write_text(json.dumps({"final_nll_per_token": round(loss.item(), 4)}))
    return out
