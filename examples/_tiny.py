"""Shared by the examples: a tiny reference model built from config and a short TRL DPO run (CPU, offline).

Not an example itself (the leading underscore keeps it out of tests/test_examples.py). Everything is built
locally: a byte-level BPE tokenizer trained on the pairs' text and a 2-layer Llama (dpo_doctor.zoo.tiny), so no
model hub is needed. Swap in your own model folder and preference file to run the examples on a real run.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

WORDS = ("the cat sat on a mat while two dogs ran past seven red apples fell from one tall tree and a small "
         "bird sang three short songs before noon").split()


def make_pairs(n: int, seed: int) -> list[dict]:
    """Standard explicit-prompt preference pairs (TRL's format) of random words, responses 2-16 words."""
    rng = random.Random(seed)

    def words(lo: int, hi: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    return [{"prompt": words(3, 8) + "?", "chosen": " " + words(2, 16) + ".", "rejected": " " + words(2, 16) + "."}
            for _ in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def build_reference(path: Path) -> Path:
    """The "SFT model" DPO starts from: a tiny Llama and its tokenizer, saved as a model folder."""
    from dpo_doctor.zoo import tiny

    corpus = [p["prompt"] + p["chosen"] + p["rejected"] for p in make_pairs(200, seed=1)]
    tokenizer = tiny.build_tokenizer(corpus, vocab_size=300)
    return tiny.save(tiny.build_model(tokenizer, hidden=32, layers=2, heads=2), tokenizer, path)


def dpo_trainer(ref: Path, out: Path, train_pairs: list[dict], callbacks=(), eval_pairs=None, max_steps: int = 6,
                save_steps: int = 2, learning_rate: float = 5e-3):
    """TRL's DPOTrainer on the tiny model: `max_steps` CPU steps, a checkpoint every `save_steps`."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(out), use_cpu=True, bf16=False, report_to="none", max_steps=max_steps,
                     save_steps=save_steps, logging_steps=1, per_device_train_batch_size=4, learning_rate=learning_rate,
                     beta=0.1, max_length=64, seed=0, save_only_model=True, dataloader_num_workers=0,
                     disable_tqdm=True)
    return DPOTrainer(model=AutoModelForCausalLM.from_pretrained(ref), args=args,
                      train_dataset=Dataset.from_list(train_pairs),
                      eval_dataset=Dataset.from_list(eval_pairs) if eval_pairs else None,
                      processing_class=AutoTokenizer.from_pretrained(ref), callbacks=list(callbacks))


def out_dir(name: str) -> Path:
    """Where an example writes: argv[1] if given, else ./dpo-doctor-examples/NAME."""
    import sys

    return Path(sys.argv[1]) if len(sys.argv) > 1 else Path("dpo-doctor-examples") / name
