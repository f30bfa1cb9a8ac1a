"""Sampling (`engine.generate.sample`), the samples table, and prompt loading (`dpo_doctor.data.prompts`)."""

import json

import polars as pl
import pytest
import torch

from dpo_doctor.zoo import tiny
from dpo_doctor.engine.generate import (GenConfig, Sample, ScoredSample, sample, samples_frame, score_samples)
from dpo_doctor.data.pairs import render
from dpo_doctor.data.tokens import encode_prompts
from dpo_doctor.engine.logprobs import sequence_logps
from dpo_doctor.errors import UserError
from dpo_doctor.data.prompts import load_prompts, load_suite, resolve_prompts, suite_names
from tests.conftest import make_pairs


README_COLUMNS = ["checkpoint", "step", "prompt_id", "prompt", "sample_idx", "greedy", "text", "n_tokens", "n_chars",
                  "logp", "ref_logp", "kl", "kl_k1", "kl_k3", "entropy"]


@pytest.fixture(scope="module")
def tok():
    return tiny.build_tokenizer([p["prompt"] + p["chosen"] for p in make_pairs(100, seed=3)], vocab_size=300)


@pytest.fixture(scope="module")
def model(tok):
    return tiny.build_model(tok, hidden=32, layers=2, heads=2, seed=0)


@pytest.fixture(scope="module")
def prompts():
    rows = [p["prompt"] for p in make_pairs(5, seed=7)]
    return rows + [[{"role": "user", "content": "what is the cat?"}]]


def test_same_seed_reproducible_and_independent_of_batching(tok, model, prompts):
    cfg = GenConfig(samples_per_prompt=3, max_new_tokens=10, batch_size=4, seed=3)
    first = sample(model, tok, encode_prompts(tok, prompts), cfg, "cpu")
    assert sample(model, tok, encode_prompts(tok, prompts), cfg, "cpu") == first
    assert sample(model, tok, encode_prompts(tok, prompts), GenConfig(samples_per_prompt=3, max_new_tokens=10, batch_size=24, seed=3),
                  "cpu") == first
    other = sample(model, tok, encode_prompts(tok, prompts), GenConfig(samples_per_prompt=3, max_new_tokens=10, batch_size=4, seed=4), "cpu")
    assert [s.token_ids for s in other] != [s.token_ids for s in first]
    assert [(s.prompt_id, s.sample_idx, s.greedy) for s in first] == [
        (p, i, i == 3) for p in range(len(prompts)) for i in range(4)]


def test_greedy_row_matches_hf_generate(tok, model, prompts):
    """One prompt at a time through `model.generate(do_sample=False)`: same tokens, same EOS stop."""
    cfg = GenConfig(samples_per_prompt=1, max_new_tokens=12, batch_size=8)
    for s in (s for s in sample(model, tok, encode_prompts(tok, prompts), cfg, "cpu") if s.greedy):
        ids = torch.tensor([list(s.prompt_ids)])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        assert out[0, ids.shape[1]:].tolist() == list(s.token_ids)
        assert s.finished == (s.token_ids[-1] == tok.eos_token_id)


def test_tiny_top_p_is_greedy(tok, model, prompts):
    """top_p -> 0 keeps only the most likely token: every sampled row equals the greedy row."""
    cfg = GenConfig(samples_per_prompt=2, max_new_tokens=8, top_p=1e-6)
    rows = sample(model, tok, encode_prompts(tok, prompts), cfg, "cpu")
    for p in range(len(prompts)):
        assert len({s.token_ids for s in rows if s.prompt_id == p}) == 1


def test_sample_logp_matches_the_shared_logprob_function(tok, model, prompts):
    """score_samples (left padding, logits_to_keep) equals `sequence_logps` (right padding) on each sample."""
    cfg = GenConfig(samples_per_prompt=2, max_new_tokens=8, batch_size=5)
    for s in score_samples(model, model, sample(model, tok, encode_prompts(tok, prompts), cfg, "cpu"), tok, cfg, "cpu"):
        ids = torch.tensor([list(s.sample.prompt_ids + s.sample.token_ids)])
        comp = torch.zeros_like(ids)
        comp[0, len(s.sample.prompt_ids):] = 1
        with torch.no_grad():
            logp, n = sequence_logps(model, ids, torch.ones_like(ids), comp)
        assert s.logp == pytest.approx(float(logp), rel=1e-5, abs=1e-4)
        assert 0 < s.topk_mass <= 1 and s.entropy > 0


def test_rows_round_trip_through_parquet_and_frame_has_readme_columns(tok, model, prompts, tmp_path):
    cfg = GenConfig(samples_per_prompt=2, max_new_tokens=6)
    scored = score_samples(model, model, sample(model, tok, encode_prompts(tok, prompts), cfg, "cpu"), tok, cfg, "cpu")
    pl.DataFrame([s.to_row() for s in scored]).write_parquet(tmp_path / "cache.parquet")
    back = [ScoredSample.from_row(r) for r in pl.read_parquet(tmp_path / "cache.parquet").iter_rows(named=True)]
    assert back == scored and all(isinstance(b.sample, Sample) for b in back)
    df = samples_frame("checkpoint-4", 4, [render(p) for p in prompts], scored)
    assert df.columns[: len(README_COLUMNS)] == README_COLUMNS
    df.write_parquet(tmp_path / "samples.parquet")
    conv = df.filter(pl.col("prompt_id") == len(prompts) - 1)
    assert conv["prompt"][0] == "user: what is the cat?"
    finished = [s.sample.finished for s in scored]
    assert (df["n_tokens"].to_numpy() == [len(s.sample.token_ids) - f for s, f in zip(scored, finished)]).all()


# ---- prompts ----------------------------------------------------------------------------------------------------


def test_load_prompts_standard_and_conversational(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "hi"}) + "\n\n" +
                    json.dumps({"prompt": [{"role": "user", "content": "yo"}], "extra": 1}) + "\n")
    assert load_prompts(path) == ["hi", [{"role": "user", "content": "yo"}]]


@pytest.mark.parametrize("line, needle", [
    ("{not json", "line 2: not valid JSON"),
    ('{"text": "x"}', 'line 2: no "prompt" key'),
    ('{"prompt": ""}', "line 2: empty prompt"),
    ('{"prompt": [{"role": "user"}]}', "line 2, field prompt[0]: message has no content"),
])
def test_bad_prompt_lines_name_file_and_line(tmp_path, line, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok"}\n' + line + "\n")
    with pytest.raises(UserError, match=str(path).replace(".", r"\.") + ".*") as err:
        load_prompts(path)
    assert needle in str(err.value)


def test_suites_and_resolution():
    assert {"open_ended", "short_answer", "mirror"} <= set(suite_names())
    open_ended = load_suite("open_ended")
    assert len(open_ended.prompts) >= 20 and open_ended.manifest["purpose"] == "diversity"
    assert all(isinstance(p, str) and p for p in load_suite("short_answer").prompts)
    with pytest.raises(UserError, match="did you mean open_ended"):
        load_suite("open-ended")
    pair_prompts = ["a?", "b?"]
    assert resolve_prompts(None, None, pair_prompts) == pair_prompts
    assert resolve_prompts(None, "mirror", pair_prompts) == pair_prompts
    conv = resolve_prompts(None, "short_answer", pair_prompts, conversational=True)
    assert conv[0] == [{"role": "user", "content": load_suite("short_answer").prompts[0]}]
    with pytest.raises(UserError, match="pass one of them"):
        resolve_prompts("x.jsonl", "open_ended", pair_prompts)
    with pytest.raises(UserError, match="no held-out pairs"):
        resolve_prompts(None, None, [])


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="temperature=0"):
        GenConfig(temperature=0)
    assert "batch_size" not in GenConfig().fingerprint()
