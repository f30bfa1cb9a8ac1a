"""The optional judge: a tiny reward model built from config (safetensors only, no remote code) and a
module:function callable, and the paired win rate with ties counted half."""

import inspect

import polars as pl
import pytest
import torch

from dpo_doctor.engine.judge import load_judge
from dpo_doctor.metrics.judge_win import judge_win_rate
from dpo_doctor.errors import UserError
from dpo_doctor.metrics.judge_win import judge_metrics, paired_texts, win_rate
from dpo_doctor.metrics.proportions import wilson
from dpo_doctor.zoo import tiny

PROMPTS = ["What is 2 + 2?", "Name a colour.", "Say hello."]
GOOD = ["4", "Blue is a colour I like very much.", "Hello!"]


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = tiny.build_tokenizer(PROMPTS + GOOD + ["a b c d e f g"] * 4, vocab_size=300)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id,
                      max_position_embeddings=128)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(cfg).eval()
    path = tmp_path_factory.mktemp("rm")
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def test_reward_model_scores_pairs_independently_of_batching(reward_model):
    """A batch pads shorter texts; each score must equal that text scored alone (the last real token is read)."""
    judge = load_judge(str(reward_model), torch.device("cpu"))
    batched = judge.score(PROMPTS, GOOD)
    alone = [judge.score([p], [c])[0] for p, c in zip(PROMPTS, GOOD)]
    assert batched == pytest.approx(alone, abs=1e-5)
    assert len(set(round(v, 6) for v in batched)) == 3  # a random head still separates different texts


def test_same_answers_tie_at_one_half(reward_model):
    judge = load_judge(str(reward_model), torch.device("cpu"))
    rate, low, high, n = judge_win_rate(judge, PROMPTS, GOOD, GOOD)
    assert (rate, n) == (0.5, 3) and (low, high) == pytest.approx(wilson(1.5, 3))


def test_safe_loading_only(tmp_path, reward_model):
    assert inspect.signature(load_judge).parameters["trust_remote_code"].default is False
    (tmp_path / "config.json").write_text((reward_model / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(UserError, match="safetensors only"):
        load_judge(str(tmp_path), torch.device("cpu"))
    with pytest.raises(UserError, match="neither a folder"):
        load_judge("no/such/folder", torch.device("cpu"))


def test_callable_judge(tmp_path, monkeypatch):
    """Judge = answer length. Policy vs reference: 'long answer' > 'short' (win), 'same' = 'same' (tie, half),
    'x' < 'xyz' (loss) -> (1 + 0.5 + 0) / 3 = 0.5; Wilson over 1.5 of 3."""
    (tmp_path / "my_judges.py").write_text(
        "def by_length(prompts, completions):\n    return [len(c) for c in completions]\n"
        "def wrong_count(prompts, completions):\n    return [1.0]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    judge = load_judge("my_judges:by_length", None)
    rate, low, high, n = judge_win_rate(judge, ["p"] * 3, ["long answer", "same", "x"], ["short", "same", "xyz"])
    assert rate == 0.5 and n == 3 and (low, high) == pytest.approx(wilson(1.5, 3))
    with pytest.raises(UserError, match="returned 1 scores for 2"):
        judge_win_rate(load_judge("my_judges:wrong_count", None), ["p", "q"], ["a", "b"], ["c", "d"])
    with pytest.raises(UserError, match="no callable 'nope'"):
        load_judge("my_judges:nope", None)
    with pytest.raises(UserError, match="cannot import"):
        load_judge("no_such_module_xyz:f", None)


def test_win_rate_pairing_and_metrics():
    """Pairs matched on (prompt_id, sample_idx); a sample the reference lacks is left out. 3 wins of 4 -> 0.75."""
    ck = pl.DataFrame({"prompt_id": [0, 0, 1, 1, 2], "sample_idx": [0, 1, 0, 1, 0], "prompt": ["a", "a", "b", "b", "c"],
                       "text": ["A0", "A1", "B0", "B1", "C0"]})
    ref = pl.DataFrame({"prompt_id": [1, 1, 0, 0], "sample_idx": [1, 0, 1, 0], "prompt": ["b", "b", "a", "a"],
                        "text": ["b1", "b0", "a1", "a0"]})
    prompts, pol, refs = paired_texts(ck, ref)
    assert prompts == ["a", "a", "b", "b"] and pol == ["A0", "A1", "B0", "B1"] and refs == ["a0", "a1", "b0", "b1"]
    rate = win_rate([1.0, 2.0, 3.0, 0.0], [0.0, 1.0, 2.0, 1.0])
    assert rate[0] == 0.75 and rate[3] == 4
    m = judge_metrics(rate)
    assert m["judge/win_rate"] == 0.75 and m["judge/n"] == 4.0 and m["judge/win_rate_low"] < 0.75
    assert judge_metrics(win_rate([], []))["judge/win_rate"] is None
