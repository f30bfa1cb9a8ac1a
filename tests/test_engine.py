"""The log-prob engine against float64 references, and batching/resume behaviour."""

import math

import numpy as np
import pytest
import torch

from dpo_doctor.data.tokens import PairTokens
from dpo_doctor.engine import sequence_logps, token_logps
from dpo_doctor.engine.pairs import PairScores, score_pairs


@pytest.fixture(scope="module")
def model(tiny_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_dir).eval()


def test_token_logps_matches_float64_log_softmax():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, 50, generator=g) * 4
    targets = torch.randint(0, 50, (5, 7), generator=g)
    ref = torch.log_softmax(logits.double(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(token_logps(logits, targets).double(), ref, atol=1e-5, rtol=0)


def _float64_logp(model, prompt, resp):
    """Reference: one unpadded sequence in float64, summing log p(resp_t | prefix) by hand."""
    m64 = model.to(torch.float64)
    ids = torch.tensor([list(prompt) + list(resp)])
    with torch.no_grad():
        logp = torch.log_softmax(m64(ids).logits[0].double(), -1)
    model.to(torch.float32)
    return sum(logp[len(prompt) + t - 1, resp[t]].item() for t in range(len(resp)))


def random_pairs(n, vocab, seed=0):
    rng = np.random.default_rng(seed)
    mk = lambda lo, hi: tuple(int(x) for x in rng.integers(5, vocab, rng.integers(lo, hi)))  # noqa: E731
    return [PairTokens(mk(2, 9), mk(1, 30), mk(1, 30)) for _ in range(n)]


def test_score_pairs_matches_float64_unpadded(model):
    pairs = random_pairs(9, model.config.vocab_size)
    out = score_pairs(model, pairs, pad_id=1, device=torch.device("cpu"), out=PairScores.empty(9), token_budget=64)
    for i, p in enumerate(pairs):
        assert out.logp_chosen[i] == pytest.approx(_float64_logp(model, p.prompt_ids, p.chosen_ids), rel=1e-5)
        assert out.logp_rejected[i] == pytest.approx(_float64_logp(model, p.prompt_ids, p.rejected_ids), rel=1e-5)
        assert out.len_chosen[i] == len(p.chosen_ids)


def test_resume_scores_only_missing(model):
    pairs = random_pairs(6, model.config.vocab_size, seed=1)
    full = score_pairs(model, pairs, 1, torch.device("cpu"), PairScores.empty(6))
    partial = PairScores.empty(6)
    partial.logp_chosen[:3] = full.logp_chosen[:3]
    partial.logp_chosen[0] = 123.0  # a sentinel: already-scored entries must not be touched
    calls = []
    score_pairs(model, pairs, 1, torch.device("cpu"), partial, progress=calls.append)
    assert sum(calls) == 9  # 3 chosen + 6 rejected sequences remained
    assert partial.logp_chosen[0] == 123.0 and partial.complete
    np.testing.assert_allclose(partial.logp_rejected, full.logp_rejected, rtol=1e-5)


def test_sequence_logps_masks_prompt_and_padding(model):
    ids = torch.tensor([[7, 8, 9, 10, 1, 1], [7, 8, 9, 10, 11, 12]])
    attn = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6])
    comp = torch.tensor([[0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0]])
    with torch.no_grad():
        s, n = sequence_logps(model, ids, attn, comp)
    assert n.tolist() == [2.0, 2.0]
    assert s[0].item() == pytest.approx(s[1].item(), rel=1e-5)  # tokens after the completion do not count
    assert math.isfinite(s[0].item())


def test_response_head_path_equals_full_logits_path_with_gradients(model, monkeypatch):
    """The head-on-response-positions path (plain-head families) gives the full-logits sums and gradients, also when
    the head runs in several chunks; a family with logit softcapping takes the full path."""
    from dpo_doctor.engine import logprobs

    assert logprobs._has_plain_head(model)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, model.config.vocab_size, (3, 40), generator=g)
    attn = torch.tensor([[1] * 40, [1] * 30 + [0] * 10, [1] * 12 + [0] * 28])
    comp = torch.tensor([[0] * 4 + [1] * 36, [0] * 3 + [1] * 27 + [0] * 10, [0] * 2 + [1] * 10 + [0] * 28])

    def full_path():
        logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
        per = token_logps(logits[:, :-1], ids[:, 1:]) * comp[:, 1:]
        return per.sum(1), comp[:, 1:].sum(1).float()

    # 73 response positions; the chunk floor is 16 rows, so this runs the head in 5 chunks
    monkeypatch.setattr(logprobs, "_HEAD_CHUNK_ELEMENTS", 1)
    results = []
    for fn in (lambda: sequence_logps(model, ids, attn, comp), full_path):
        model.zero_grad()
        s, n = fn()
        s.sum().backward()
        results.append((s.detach(), n, model.get_output_embeddings().weight.grad.clone()))
    (s1, n1, g1), (s2, n2, g2) = results
    torch.testing.assert_close(s1, s2, atol=1e-5, rtol=0)
    assert n1.tolist() == n2.tolist() == [36.0, 27.0, 10.0]
    torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-4)

    class Capped:
        config = type("C", (), {"model_type": "llama", "final_logit_softcapping": 30.0})()

        def get_decoder(self):
            raise AssertionError("softcapped logits must not take the head-only path")

    assert not logprobs._has_plain_head(Capped())


def test_prefix_sharing_matches_float64_and_is_chosen_for_long_prompts(model, monkeypatch):
    """Each prompt encoded once (KV cache reused for both responses) gives the float64 unpadded sums; `score_pairs`
    picks it by itself when prompts dominate the tokens, and not when responses do."""
    from dpo_doctor.engine import prefix

    rng = np.random.default_rng(5)
    mk = lambda lo, hi: tuple(int(x) for x in rng.integers(5, model.config.vocab_size, rng.integers(lo, hi)))  # noqa: E731
    long_prompts = [PairTokens(mk(20, 40), mk(1, 6), mk(1, 6)) for _ in range(7)]
    assert prefix.prompt_share(long_prompts) > prefix.PROMPT_SHARE_MIN
    assert prefix.prompt_share(random_pairs(7, model.config.vocab_size)) < prefix.PROMPT_SHARE_MIN
    assert prefix.supports_prefix_sharing(model)

    calls = []
    real = prefix.score_pair_batch

    def spy(m, ps, pad_id, device):
        calls.append(len(ps))
        return real(m, ps, pad_id, device)

    monkeypatch.setattr(prefix, "score_pair_batch", spy)
    out = score_pairs(model, long_prompts, 1, torch.device("cpu"), PairScores.empty(7), token_budget=120)
    assert sum(calls) == 7 and len(calls) > 1  # every pair through the prefix path, in several batches
    calls.clear()
    score_pairs(model, random_pairs(4, model.config.vocab_size), 1, torch.device("cpu"), PairScores.empty(4))
    assert calls == []  # response-heavy: bucketed
    for i, p in enumerate(long_prompts):
        assert out.logp_chosen[i] == pytest.approx(_float64_logp(model, p.prompt_ids, p.chosen_ids), rel=1e-5)
        assert out.logp_rejected[i] == pytest.approx(_float64_logp(model, p.prompt_ids, p.rejected_ids), rel=1e-5)
        assert (out.len_chosen[i], out.len_rejected[i]) == (len(p.chosen_ids), len(p.rejected_ids))


def test_prefix_sharing_resume_keeps_finished_sides(model):
    pairs = [PairTokens(tuple(range(5, 35)), (40, 41, 42), (43,)) for _ in range(3)]
    full = score_pairs(model, pairs, 1, torch.device("cpu"), PairScores.empty(3), prefix_sharing=True)
    partial = PairScores.empty(3)
    partial.logp_chosen[0] = 123.0  # chosen of pair 0 already scored: only its rejected side is left
    score_pairs(model, pairs, 1, torch.device("cpu"), partial, prefix_sharing=True)
    empty = score_pairs(model, [PairTokens((), (40, 41, 42), (43,))], 1, torch.device("cpu"), PairScores.empty(1),
                        prefix_sharing=True)  # nothing to share: bucketed, no crash
    assert empty.complete
    assert partial.logp_chosen[0] == 123.0 and partial.complete
    np.testing.assert_allclose(partial.logp_rejected, full.logp_rejected, rtol=1e-5)
    np.testing.assert_allclose(partial.logp_chosen[1:], full.logp_chosen[1:], rtol=1e-5)
