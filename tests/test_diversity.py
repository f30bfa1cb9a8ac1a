"""Diversity metrics: distinct-n, EAD, self-BLEU on hand-worked sets, and on a collapsed vs an untrained model."""

import math

import polars as pl
import pytest
import torch

from dpo_doctor.zoo import tiny
from dpo_doctor.engine.generate import GenConfig, sample, samples_frame, score_samples
from dpo_doctor.data.tokens import encode_prompts
from dpo_doctor.engine.logprobs import sequence_logps
from dpo_doctor.metrics.distinct_n import distinct_n
from dpo_doctor.metrics.diversity import diversity_metrics, prompt_sets
from dpo_doctor.metrics.ead import ead, ead_n
from dpo_doctor.metrics.self_bleu import bleu, self_bleu
from tests.conftest import make_pairs


A, B = [1, 2, 3, 4], [1, 2, 3, 5]


def test_distinct_n_hand_values():
    """Set {A = 1 2 3 4, B = 1 2 3 5}.
    unigrams: 8 in all, unique {1,2,3,4,5} = 5 -> 5/8 = 0.625
    bigrams:  6 in all, unique {12, 23, 34, 35} = 4 -> 4/6
    trigrams: 4 in all, unique {123, 234, 235} = 3 -> 3/4 (n-grams never cross from A into B)
    5-grams: none -> None."""
    assert distinct_n([A, B], 1) == 0.625
    assert distinct_n([A, B], 2) == pytest.approx(4 / 6)
    assert distinct_n([A, B], 3) == 0.75
    assert distinct_n([A, B], 5) is None


def test_ead_hand_values():
    """Same set, V = 10. EAD_n = unique / (V * (1 - 0.9^C)):
    n=1: 5 / (10 * (1 - 0.9^8)) = 5 / 5.6953279 = 0.8779132
    n=2: 4 / (10 * (1 - 0.9^6)) = 4 / 4.68559   = 0.8536812
    n=3: 3 / (10 * (1 - 0.9^4)) = 3 / 3.439     = 0.8723466
    n=4: 2 / (10 * (1 - 0.9^2)) = 2 / 1.9       = 1.0526316
    n=5: no 5-grams, skipped -> EAD = mean of the four = 0.9141430.
    And for a huge vocabulary EAD_1 -> unique / C = distinct-1 (1 - (1-1/V)^C ~ C/V)."""
    assert ead_n([A, B], 1, 10) == pytest.approx(0.8779132, abs=1e-6)
    assert ead_n([A, B], 4, 10) == pytest.approx(1.0526316, abs=1e-6)
    assert ead([A, B], 10) == pytest.approx(0.9141430, abs=1e-6)
    assert ead_n([A, B], 1, 10**9) == pytest.approx(0.625, rel=1e-6)
    assert ead([[], []], 10) is None


def test_self_bleu_hand_values():
    """BLEU-3 of A against B: clipped precisions 3/4 (1,2,3), 2/3 (12, 23), 1/2 (123); lengths equal, BP = 1;
    BLEU = (3/4 * 2/3 * 1/2)^(1/3) = 0.25^(1/3) = 0.6299605. B against A is symmetric: self-BLEU = 0.6299605.
    Identical samples: 1. A against C = 6 7 8 9 (nothing shared): every precision 0.1/count (smoothing 1):
    (0.1/4 * 0.1/3 * 0.1/2)^(1/3) = 0.0347. Brevity: candidate 1 2 against reference 1 2 3 4: p1 = p2 = 1, BP =
    exp(1 - 4/2) = e^-1 = 0.3678794."""
    assert self_bleu([A, B]) == pytest.approx(0.25 ** (1 / 3), abs=1e-7)
    assert self_bleu([A, A, A]) == pytest.approx(1.0)
    assert bleu(A, [[6, 7, 8, 9]]) == pytest.approx((0.1 / 4 * 0.1 / 3 * 0.1 / 2) ** (1 / 3))
    assert bleu([1, 2], [A]) == pytest.approx(math.exp(-1))
    assert self_bleu([A]) is None


def test_diversity_metrics_equal_sample_counts_and_across_input():
    """Prompt 0 has three samples, prompt 1 two: both are cut to two (equal counts). Across-input takes
    sample_idx 0 of each prompt: {A, A} -> EAD over [A, A] with V = 10. Greedy rows are ignored."""
    df = pl.DataFrame({
        "prompt_id": [0, 0, 0, 1, 1, 1], "sample_idx": [0, 1, 2, 0, 1, 2], "greedy": [False] * 5 + [True],
        "token_ids": [A, B, [7, 7], A, A, [9]], "entropy": [1.0, 2.0, 3.0, 4.0, 5.0, 50.0],
        "topk_mass": [0.5] * 5 + [1.0],
    })
    assert prompt_sets(df.filter(~pl.col("greedy"))) == [[A, B], [A, A]]
    m = diversity_metrics(df, vocab_size=10)
    assert m["gen/distinct_1"] == pytest.approx((0.625 + 4 / 8) / 2)
    assert m["gen/self_bleu"] == pytest.approx((0.25 ** (1 / 3) + 1.0) / 2)
    assert m["gen/ead_across_input"] == pytest.approx(ead([A, A], 10))
    assert (m["gen/entropy_mean"], m["gen/topk_mass"]) == (3.0, 0.5)


def _train_fixed_answer(tok, prompts, steps=40):
    """NLL on one fixed answer for every prompt, with the shared `sequence_logps`."""
    model = tiny.build_model(tok, hidden=32, layers=2, heads=2, seed=0).train()
    answer = tok(text=" yes.")["input_ids"] + [tok.eos_token_id]
    rows = [tok(text=p)["input_ids"] + answer for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    attn, comp = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], attn[i, : len(r)] = torch.tensor(r), 1
        comp[i, len(r) - len(answer): len(r)] = 1
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        logp, n = sequence_logps(model, ids, attn, comp)
        loss = -(logp / n).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_collapsed_model_shows_no_diversity_and_the_reference_does():
    """A model trained to emit one answer gives identical samples: per-input distinct-n and EAD sit at their floor
    (a set of S identical answers has 1/S unique n-grams), self-BLEU 1, entropy near 0, top-k mass near 1. The
    untrained model it started from samples almost uniformly: EAD near 1, self-BLEU near 0."""
    pairs = make_pairs(40, seed=11)
    tok = tiny.build_tokenizer([p["prompt"] + p["chosen"] for p in pairs] + [" yes."], vocab_size=300)
    prompts = [p["prompt"] for p in pairs[:8]]
    reference = tiny.build_model(tok, hidden=32, layers=2, heads=2, seed=0)
    collapsed = _train_fixed_answer(tok, [p["prompt"] for p in pairs])
    cfg = GenConfig(samples_per_prompt=4, max_new_tokens=10)
    out = {}
    for name, model in (("collapsed", collapsed), ("reference", reference)):
        scored = score_samples(model, reference, sample(model, tok, encode_prompts(tok, prompts), cfg, "cpu"), tok, cfg, "cpu")
        out[name] = diversity_metrics(samples_frame(name, 0, prompts, scored), len(tok))
    c, r = out["collapsed"], out["reference"]
    assert c["gen/self_bleu"] > 0.99 and r["gen/self_bleu"] < 0.2
    assert c["gen/distinct_2"] <= 0.25 + 1e-9 and r["gen/distinct_2"] > 0.9
    assert c["gen/ead_per_input"] < 0.3 and r["gen/ead_per_input"] > 0.8
    assert c["gen/ead_across_input"] < 0.2 and r["gen/ead_across_input"] > 0.8
    assert c["gen/entropy_mean"] < 0.1 < 5.0 < r["gen/entropy_mean"]
    assert c["gen/topk_mass"] > 0.98 > 0.2 > r["gen/topk_mass"]
