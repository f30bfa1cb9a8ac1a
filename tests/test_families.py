"""Issue 16: scoring is correct across transformers families.

A family matrix of decoder-only families of the installed transformers (tied and untied embeddings, final-logit
softcapping, logit scaling, sliding windows, ALiBi, MoE). Each family is a tiny random model built from its config
class, seeded, in float32 on the CPU. The reference scores every sequence alone (batch 1, no padding) with a float64
copy of the model and sums log_softmax(logits)[t, next token] over the response, taking the logits the family's own
forward returns (so its softcap / scaling is applied exactly as it applies it). The engine (`score_pairs`, float32,
the 4 pairs batched together, right-padded) must match it on three paths:

* default: head only on response positions where the family is in `PLAIN_HEAD_TYPES`, full logits otherwise;
* full logits forced (`PLAIN_HEAD_TYPES` emptied);
* prefix sharing forced on (`prefix_sharing=True`: prompts left-padded and encoded once, KV cache reused); also for
  the families `prefix.supports_prefix_sharing` declines (the automatic choice never takes them), since an explicit
  `prefix_sharing=True` does run them.

Random init is widened (initializer_range) so that log-probs vary by whole nats between tokens: with the default 0.02
every token sits at ~-log(V) and an off-by-one position or a dropped softcap would hide under the tolerance. The
guards at the bottom check that the matrix has teeth (softcap / scaling / sliding window really change the logits).
"""

from __future__ import annotations

import copy
import functools
import warnings

import numpy as np
import pytest
import torch

from dpo_doctor.data.tokens import PairTokens
from dpo_doctor.engine import logprobs, prefix
from dpo_doctor.engine.pairs import PairScores, score_pairs

VOCAB = 96
WINDOW = 6  # sliding window, in tokens: several prompts and responses are longer
RTOL, ATOL = 1e-5, 1e-4  # float32 engine vs float64 reference, on summed log-probs (sums here: -1.5 .. -190 nats)

_LLAMA_LIKE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=8, max_position_embeddings=128, pad_token_id=0, bos_token_id=1,
                   eos_token_id=2, initializer_range=0.3)
_SLIDE = dict(sliding_window=WINDOW)

# id -> (model_type, config overrides). Families not in the installed transformers are skipped, not failed.
FAMILIES: dict[str, tuple[str, dict]] = {
    "llama": ("llama", dict(_LLAMA_LIKE, tie_word_embeddings=False)),
    "llama_tied": ("llama", dict(_LLAMA_LIKE, tie_word_embeddings=True)),
    "mistral_swa": ("mistral", dict(_LLAMA_LIKE, **_SLIDE)),
    "mixtral_swa": ("mixtral", dict(_LLAMA_LIKE, num_local_experts=4, num_experts_per_tok=2, **_SLIDE)),
    "qwen2_swa": ("qwen2", dict(_LLAMA_LIKE, use_sliding_window=True, max_window_layers=0, **_SLIDE)),
    "qwen3_tied": ("qwen3", dict(_LLAMA_LIKE, tie_word_embeddings=True)),
    "qwen3_moe": ("qwen3_moe", dict(_LLAMA_LIKE, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                    decoder_sparse_step=1, mlp_only_layers=[])),
    "gemma": ("gemma", dict(_LLAMA_LIKE)),
    "gemma2_softcap_swa": ("gemma2", dict(_LLAMA_LIKE, final_logit_softcapping=3.0, attn_logit_softcapping=5.0,
                                          query_pre_attn_scalar=8, **_SLIDE)),  # eager attention: gemma2's own pick
    "gemma3_text_swa": ("gemma3_text", dict(_LLAMA_LIKE, query_pre_attn_scalar=8,
                                            layer_types=["sliding_attention", "full_attention"], **_SLIDE)),
    "phi3": ("phi3", dict(_LLAMA_LIKE, tie_word_embeddings=False)),
    "phi": ("phi", dict(_LLAMA_LIKE)),
    "gpt2": ("gpt2", dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=128, initializer_range=0.3,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0)),
    "gpt2_untied": ("gpt2", dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                 initializer_range=0.3, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                                 tie_word_embeddings=False)),
    "gpt_neox": ("gpt_neox", dict(_LLAMA_LIKE)),
    "opt": ("opt", dict(vocab_size=VOCAB, hidden_size=32, ffn_dim=64, word_embed_proj_dim=32, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128, init_std=0.3, pad_token_id=0,
                        bos_token_id=1, eos_token_id=2)),
    "falcon": ("falcon", dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              max_position_embeddings=128, initializer_range=0.3, pad_token_id=0, bos_token_id=1,
                              eos_token_id=2)),
    "falcon_alibi": ("falcon", dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    num_kv_heads=2, new_decoder_architecture=True, alibi=True,
                                    max_position_embeddings=128, initializer_range=0.3, pad_token_id=0, bos_token_id=1,
                                    eos_token_id=2)),
    "olmo2": ("olmo2", dict(_LLAMA_LIKE)),
    "granite_scaled": ("granite", dict(_LLAMA_LIKE, logits_scaling=0.25, embedding_multiplier=2.0,
                                       residual_multiplier=0.5, attention_multiplier=0.2)),
    "cohere_scaled": ("cohere", dict(_LLAMA_LIKE, logit_scale=0.5)),
    "starcoder2_swa": ("starcoder2", dict(_LLAMA_LIKE, **_SLIDE)),
    "stablelm": ("stablelm", dict(_LLAMA_LIKE)),
    "smollm3_tied": ("smollm3", dict(_LLAMA_LIKE, tie_word_embeddings=True)),
}

# prompt / chosen / rejected lengths: prompts both shorter and longer than WINDOW, responses of 1 token and longer
# than WINDOW, so that right padding, left padding (prefix path) and the window all matter
_LENGTHS = [(3, 9, 2), (14, 1, 7), (9, 12, 4), (20, 3, 3)]


def _pairs() -> list[PairTokens]:
    rng = np.random.default_rng(16)
    mk = lambda n: tuple(int(x) for x in rng.integers(3, VOCAB, n))  # noqa: E731  (ids 0-2: pad/bos/eos)
    return [PairTokens(mk(p), mk(c), mk(r)) for p, c, r in _LENGTHS]


PAIRS = _pairs()


@functools.lru_cache(maxsize=None)
def _model(family: str):
    """The family's tiny float32 model (built once); skips if this transformers lacks the family or cannot build it."""
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    model_type, overrides = FAMILIES[family]
    if model_type not in CONFIG_MAPPING:
        pytest.skip(f"{model_type} not in this transformers")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg = CONFIG_MAPPING[model_type](**overrides)
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(cfg).float().eval()
    except Exception as exc:  # a config this transformers rejects: skip with the reason, don't fail the matrix
        pytest.skip(f"{model_type} does not build from config: {type(exc).__name__}: {exc}")
    assert model.config.model_type == model_type
    return model


@functools.lru_cache(maxsize=None)
def _reference(family: str) -> tuple[np.ndarray, np.ndarray]:
    """Float64, one sequence at a time, no padding, no attention mask: sum of log p(response token | prefix)."""
    m64 = copy.deepcopy(_model(family)).double()
    if hasattr(m64, "set_experts_implementation") and getattr(m64.config, "_experts_implementation", None) not in (
            None, "eager"):
        m64.set_experts_implementation("eager")  # MoE grouped_mm kernels take no float64; the engine keeps its kernel
    sums = {"chosen": [], "rejected": []}
    with torch.no_grad():
        for p in PAIRS:
            for side in sums:
                resp = getattr(p, f"{side}_ids")
                ids = torch.tensor([list(p.prompt_ids) + list(resp)])
                logp = torch.log_softmax(m64(input_ids=ids, use_cache=False).logits[0].double(), -1)
                n = len(p.prompt_ids)
                sums[side].append(sum(logp[n + t - 1, resp[t]].item() for t in range(len(resp))))
    return np.array(sums["chosen"]), np.array(sums["rejected"])


def _spy(monkeypatch, module, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


@pytest.mark.parametrize("path", ["default", "full_logits", "prefix"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_score_pairs_matches_float64_reference(family, path, monkeypatch):
    model = _model(family)
    ref_chosen, ref_rejected = _reference(family)
    head_only = _spy(monkeypatch, logprobs, "_response_head_logps")
    prefixed = _spy(monkeypatch, prefix, "score_pair_batch")
    if path == "full_logits":
        monkeypatch.setattr(logprobs, "PLAIN_HEAD_TYPES", frozenset())
    out = score_pairs(model, PAIRS, pad_id=0, device=torch.device("cpu"), out=PairScores.empty(len(PAIRS)),
                      token_budget=4096, prefix_sharing=(path == "prefix"))

    # the path under test is the one that ran, all 4 pairs batched together
    plain = model.config.model_type in logprobs.PLAIN_HEAD_TYPES
    assert len(prefixed) == (path == "prefix")
    assert len(head_only) == (path == "default" and plain)
    np.testing.assert_array_equal(out.len_chosen, [c for _, c, _ in _LENGTHS])
    np.testing.assert_array_equal(out.len_rejected, [r for _, _, r in _LENGTHS])
    np.testing.assert_allclose(out.logp_chosen, ref_chosen, rtol=RTOL, atol=ATOL, err_msg=f"{family} {path} chosen")
    np.testing.assert_allclose(out.logp_rejected, ref_rejected, rtol=RTOL, atol=ATOL,
                               err_msg=f"{family} {path} rejected")


# ---- the matrix has teeth -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
def test_reference_log_probs_are_spread(family):
    """Per-token log-probs differ by whole nats, so a position or masking error would not hide under ATOL."""
    model = _model(family)
    ids = torch.tensor([list(PAIRS[3].prompt_ids) + list(PAIRS[3].chosen_ids)])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1).gather(-1, ids[0, 1:, None])
    assert logp.std().item() > 0.5, f"{family}: log-probs too flat ({logp.std().item():.3f}) to test anything"


def _head_logits(model, ids):
    return model.get_output_embeddings()(model.get_decoder()(input_ids=ids).last_hidden_state)


@pytest.mark.parametrize("family", [f for f, (_, o) in FAMILIES.items()
                                    if o.get("final_logit_softcapping") or o.get("logits_scaling")
                                    or o.get("logit_scale")])
def test_logit_transform_matters_and_keeps_the_full_path(family):
    """Softcapped / scaled families: the forward's logits are not the bare head's, and the engine does not take the
    head-only path for them (which would skip the transform)."""
    model = _model(family)
    ids = torch.tensor([list(PAIRS[1].prompt_ids)])
    with torch.no_grad():
        gap = (model(input_ids=ids).logits - _head_logits(model, ids)).abs().max().item()
    assert gap > 0.5, f"{family}: softcap/scaling barely changes the logits ({gap:.3g})"
    assert not logprobs._has_plain_head(model)


@pytest.mark.parametrize("family", [f for f, (_, o) in FAMILIES.items() if o.get("sliding_window")])
def test_sliding_window_matters(family):
    """The window is small enough to change the logits of the longer sequences (else the matrix would not test it)."""
    model = _model(family)
    ids = torch.tensor([list(PAIRS[3].prompt_ids) + list(PAIRS[3].chosen_ids)])
    wide = copy.deepcopy(model)
    wide.config.sliding_window = 10_000
    for sub in wide.modules():
        if hasattr(sub, "sliding_window") and isinstance(getattr(sub, "sliding_window"), int):
            sub.sliding_window = 10_000
        if getattr(sub, "config", None) is not None and getattr(sub.config, "sliding_window", None):
            sub.config.sliding_window = 10_000
    with torch.no_grad():
        gap = (model(input_ids=ids).logits - wide(input_ids=ids).logits).abs().max().item()
    assert gap > 1e-2, f"{family}: the sliding window ({WINDOW}) does not change the logits"
