"""Shared fixtures: tiny tokenizers and models built offline, and small preference data sets."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json
import random

import torch

# Tiny models run fastest on one thread; on a shared 2-core machine OpenMP spinning makes 2 threads far slower.
torch.set_num_threads(1)
from pathlib import Path

import pytest

WORDS = ("the cat dog sat ran on under a mat log red blue big small quick slow answer question is what why "
         "how yes no good bad very many few one two three four five").split()


def make_pairs(n: int = 12, seed: int = 0) -> list[dict]:
    """Standard explicit-prompt pairs with variable lengths (responses 2-20 words)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) + "?"
        chosen = " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 20))) + "."
        rejected = " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 20))) + "."
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny Llama + BPE tokenizer saved as a model dir (safetensors)."""
    from dpo_doctor.zoo import tiny

    corpus = [p["prompt"] + p["chosen"] + p["rejected"] for p in make_pairs(200, seed=1)]
    tok = tiny.build_tokenizer(corpus, vocab_size=300)
    model = tiny.build_model(tok, hidden=32, layers=2, heads=2)
    return tiny.save(model, tok, tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture()
def pairs_jsonl(tmp_path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(12)))
    return path
