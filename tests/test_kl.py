"""Exact KL(pi || pi_ref) and the k1/k3 estimators: engine (`engine.generate`) and metrics (`metrics.kl`)."""

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from tests.conftest import make_pairs
from dpo_doctor.zoo import tiny
from dpo_doctor.data.pairs import tokenize_pair
from dpo_doctor.engine.generate import GenConfig, data_kl_per_token, sample, score_samples, token_stats
from dpo_doctor.data.tokens import encode_prompts
from dpo_doctor.engine.logprobs import collate_pairs
from dpo_doctor.metrics.kl import kl_metrics



@pytest.fixture(scope="module")
def tok():
    return tiny.build_tokenizer([p["prompt"] + p["chosen"] for p in make_pairs(100, seed=3)], vocab_size=300)


@pytest.fixture(scope="module")
def models(tok):
    return tiny.build_model(tok, hidden=32, layers=2, heads=2, seed=0), tiny.build_model(tok, hidden=32, layers=2,
                                                                                          heads=2, seed=1)


class UnigramLM(torch.nn.Module):
    """A context-free LM: the same next-token logits at every position, so KL(p || q) per token is known."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("w", logits)
        self.generation_config = None

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False,
                logits_to_keep=0):
        keep = logits_to_keep or input_ids.shape[1]
        return SimpleNamespace(logits=self.w.expand(input_ids.shape[0], keep, -1), past_key_values=None)


def _float64_kl(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    lp, lq = x.double().log_softmax(-1), y.double().log_softmax(-1)
    return (lp.exp() * (lp - lq)).sum(-1)


def test_token_stats_match_float64_on_hand_sized_vocab():
    """V = 7 split in vocab chunks of 3 and row chunks of 2: KL, entropy, target log-probs equal float64's."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 7, generator=g) * 3, torch.randn(5, 7, generator=g) * 3
    t = torch.tensor([0, 3, 6, 2, 2])
    st = token_stats(x, y, t, vocab_chunk=3, row_chunk=2)
    lp = x.double().log_softmax(-1)
    torch.testing.assert_close(st.kl.double(), _float64_kl(x, y), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(st.entropy.double(), -(lp.exp() * lp).sum(-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(st.logp.double(), lp.gather(-1, t[:, None])[:, 0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(st.topk_mass.double(), torch.ones(5, dtype=torch.float64), atol=1e-6, rtol=0)  # k=10>V


def test_kl_of_a_model_with_itself_is_exactly_zero(tok, models):
    policy, _ = models
    cfg = GenConfig(samples_per_prompt=2, max_new_tokens=6, batch_size=4)
    samples = sample(policy, tok, encode_prompts(tok, [p["prompt"] for p in make_pairs(3)]), cfg, "cpu")
    for s in score_samples(policy, policy, samples, tok, cfg, "cpu"):
        assert (s.kl, s.kl_k1, s.kl_k3) == (0.0, 0.0, 0.0)
        assert s.logp == s.ref_logp


def test_sequence_kl_matches_float64_recomputation(tok, models):
    """Left-padded, logits_to_keep, chunked: equals one unpadded float64 forward per sample, summed per token."""
    policy, reference = models
    cfg = GenConfig(samples_per_prompt=2, max_new_tokens=7, batch_size=3, kl_vocab_chunk=64)
    prompts = [p["prompt"] for p in make_pairs(3, seed=5)]
    scored = score_samples(policy, reference, sample(policy, tok, encode_prompts(tok, prompts), cfg, "cpu"), tok, cfg, "cpu")
    p64, r64 = policy.double(), reference.double()
    try:
        for s in scored:
            ids = torch.tensor([list(s.sample.prompt_ids + s.sample.token_ids)])
            n = len(s.sample.token_ids)
            with torch.no_grad():
                x, y = p64(input_ids=ids).logits[0, -n - 1:-1], r64(input_ids=ids).logits[0, -n - 1:-1]
            tgt = ids[0, -n:]
            assert s.kl == pytest.approx(float(_float64_kl(x, y).sum()), rel=1e-4, abs=1e-5)
            k1 = (x.log_softmax(-1) - y.log_softmax(-1)).gather(-1, tgt[:, None]).sum()
            assert s.kl_k1 == pytest.approx(float(k1), rel=1e-4, abs=1e-4)
    finally:
        policy.float(), reference.float()


def test_k1_k3_agree_with_exact_kl_within_sampling_error(tok):
    """pi, pi_ref: fixed distributions over the tiny vocabulary. Per sample, the exact KL is n_tokens * KL(p || q)
    (float64); the k1 and k3 sums are unbiased for the same expectation, so their means over 600 samples lie within
    4 standard errors of the exact mean (about 1 failure in 15,000 runs, and the seed is fixed)."""
    g = torch.Generator().manual_seed(1)
    vocab = len(tok)
    p_logits, q_logits = torch.randn(vocab, generator=g) * 1.5, torch.randn(vocab, generator=g) * 1.5
    per_token = float(_float64_kl(p_logits, q_logits))
    policy, reference = UnigramLM(p_logits), UnigramLM(q_logits)
    cfg = GenConfig(samples_per_prompt=20, max_new_tokens=6, greedy=False, batch_size=200)
    prompts = [f"q{i}" for i in range(30)]
    scored = score_samples(policy, reference, sample(policy, tok, encode_prompts(tok, prompts), cfg, "cpu"), tok, cfg, "cpu")
    exact = np.array([s.kl for s in scored])
    np.testing.assert_allclose(exact, [len(s.sample.token_ids) * per_token for s in scored], rtol=1e-4)
    for est in (np.array([s.kl_k1 for s in scored]), np.array([s.kl_k3 for s in scored])):
        diff = est - exact
        assert abs(diff.mean()) < 4 * diff.std(ddof=1) / np.sqrt(len(diff))


def test_sampler_draws_from_the_model_distribution(tok):
    """Token frequencies of `sample` at temperature 1 match the unigram model's p (chi-square on the 8 likeliest
    tokens + the rest pooled, 4,800 draws)."""
    from scipy import stats

    logits = torch.randn(len(tok), generator=torch.Generator().manual_seed(2)) * 2
    cfg = GenConfig(samples_per_prompt=20, max_new_tokens=8, greedy=False, batch_size=240)
    samples = sample(UnigramLM(logits), tok, encode_prompts(tok, [f"q{i}" for i in range(30)]), cfg, "cpu")
    drawn = torch.tensor([t for s in samples for t in s.token_ids])
    p = logits.double().softmax(-1)
    top = p.argsort(descending=True)[:8]
    observed = [int((drawn == t).sum()) for t in top]
    expected = [float(p[t]) * len(drawn) for t in top]
    observed.append(len(drawn) - sum(observed))
    expected.append(len(drawn) - sum(expected))
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_data_kl_per_token(tok, models):
    """Zero for a model against itself; the per-token mean of the float64 KL over response tokens otherwise."""
    policy, reference = models
    pairs = [tokenize_pair(tok, p["prompt"], p["chosen"], p["rejected"]) for p in make_pairs(3)]
    batch = collate_pairs(pairs, tok.pad_token_id)
    assert data_kl_per_token(policy, policy, batch) == 0.0
    keep = batch["completion_mask"][:, 1:].bool()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        x = policy.double()(**inputs).logits[:, :-1][keep]
        y = reference.double()(**inputs).logits[:, :-1][keep]
    policy.float(), reference.float()
    assert data_kl_per_token(policy, reference, batch) == pytest.approx(float(_float64_kl(x, y).mean()), rel=1e-4)


def test_kl_metrics_hand_values():
    """Sampled rows kl = 1, 2, 3, 6 -> mean 3; k1 = 0, 2, 4, 6 -> 3; k3 = 1, 1, 1, 1 -> 1. The greedy row (kl 100)
    is not a draw from pi and is left out. The 95% bootstrap CI brackets the mean and lies within [1, 6]."""
    df = pl.DataFrame({"greedy": [False, False, False, False, True], "kl": [1.0, 2.0, 3.0, 6.0, 100.0],
                       "kl_k1": [0.0, 2.0, 4.0, 6.0, 100.0], "kl_k3": [1.0, 1.0, 1.0, 1.0, 100.0]})
    m = kl_metrics(df)
    assert (m["gen/kl_mean"], m["gen/kl_k1_mean"], m["gen/kl_k3_mean"]) == (3.0, 3.0, 1.0)
    assert 1.0 <= m["gen/kl_ci_low"] < 3.0 < m["gen/kl_ci_high"] <= 6.0
    zero = kl_metrics(df.with_columns(pl.lit(0.0).alias("kl")))
    assert (zero["gen/kl_ci_low"], zero["gen/kl_ci_high"]) == (0.0, 0.0)


def test_kl_per_token_is_a_ratio_of_sums():
    """Sampled rows kl = 1, 2, 3, 6 over 4, 4, 4, 12 tokens -> 12 / 24 = 0.5 nats/token (not the mean of the
    per-row ratios, 0.375); the greedy row is left out; the CI brackets it."""
    df = pl.DataFrame({"greedy": [False, False, False, False, True], "kl": [1.0, 2.0, 3.0, 6.0, 100.0],
                       "kl_k1": [0.0] * 5, "kl_k3": [0.0] * 5, "n_tokens": [4, 4, 4, 12, 1]})
    m = kl_metrics(df)
    assert m["gen/kl_per_token"] == 0.5
    assert m["gen/kl_per_token_ci_low"] <= 0.5 <= m["gen/kl_per_token_ci_high"]
