"""Loading checkpoints and tokenizers: same logits as the in-memory model, corrupt files caught, fingerprints."""

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch

from dpo_doctor import discover as disc
from dpo_doctor import weights
from dpo_doctor.discover import ModelSpec, discover
from dpo_doctor.engine.loading import (
    load_model, load_tokenizer, tokenizers_compatible, validate_weights, weights_fingerprint,
)
from dpo_doctor.errors import UserError
from tests.test_discover import lora_model, make_tokenizer, save_adapter, save_full


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tok) -> Path:
    return save_full(tmp_path_factory.mktemp("base") / "base", tok, seed=0)


def logits(model, tok) -> torch.Tensor:
    ids = torch.tensor([tok("the cat sat on a log")["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def full(path: Path) -> ModelSpec:
    return ModelSpec(path=path, kind="full", base=None)


# ---- models ---------------------------------------------------------------------------------------------------

def test_full_model_logits_match(tmp_path, tok):
    from dpo_doctor.zoo import tiny

    model = tiny.build_model(tok, hidden=32, layers=2, heads=2, seed=3)
    tiny.save(model, tok, tmp_path / "m")
    loaded = load_model(full(tmp_path / "m"), "cpu", torch.float32)
    assert not loaded.training
    torch.testing.assert_close(logits(loaded, tok), logits(model, tok), rtol=0, atol=1e-6)


def test_sharded_model_logits_match(tmp_path, tok, base_dir):
    save_full(tmp_path / "sharded", tok, seed=0, max_shard_size="100KB")
    assert len(validate_weights(full(tmp_path / "sharded"))) > 1
    a = load_model(full(tmp_path / "sharded"), "cpu", torch.float32)
    b = load_model(full(base_dir), "cpu", torch.float32)
    torch.testing.assert_close(logits(a, tok), logits(b, tok), rtol=0, atol=0)


def test_adapter_checkpoint_matches_base_plus_adapter_in_memory(tmp_path, tok, base_dir):
    save_adapter(tmp_path / "run" / "checkpoint-1", base_dir, tok, seed=7)
    expected = logits(lora_model(base_dir, seed=7), tok)
    base_logits = logits(load_model(full(base_dir), "cpu", torch.float32), tok)
    assert (expected - base_logits).abs().max() > 1e-2  # the adapter really changes the model
    spec = discover(tmp_path / "run").checkpoints[0].spec
    loaded = load_model(spec, "cpu", torch.float32)
    assert not loaded.training
    torch.testing.assert_close(logits(loaded, tok), expected, rtol=1e-5, atol=1e-5)


def test_ref_sub_adapter_loads_the_ref_weights(tmp_path, tok, base_dir):
    save_adapter(tmp_path / "run" / "checkpoint-2", base_dir, tok, seed=5, adapters=("default", "ref"))
    in_memory = lora_model(base_dir, seed=5, adapters=("default", "ref"))
    want_policy = logits(in_memory, tok)
    in_memory.set_adapter("ref")
    want_ref = logits(in_memory, tok)
    run = discover(tmp_path / "run")
    torch.testing.assert_close(logits(load_model(run.reference, "cpu", torch.float32), tok), want_ref,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits(load_model(run.checkpoints[0].spec, "cpu", torch.float32), tok), want_policy,
                               rtol=1e-5, atol=1e-5)


def test_adapter_kept_unmerged_in_bf16(tmp_path, tok, base_dir):
    """Merging B·A into bf16 weights would round small deltas away; the PEFT wrapper must stay."""
    from peft import PeftModel

    spec = save_adapter(tmp_path / "a", base_dir, tok, seed=1)
    model = load_model(disc.model_spec(spec, None, None), "cpu", torch.bfloat16)
    assert isinstance(model, PeftModel)
    assert next(model.parameters()).dtype == torch.bfloat16


# ---- corrupt safetensors --------------------------------------------------------------------------------------

def _copy(base_dir: Path, dst: Path) -> Path:
    shutil.copytree(base_dir, dst)
    return dst / "model.safetensors"


def test_truncated_file_header_says(tmp_path, base_dir):
    f = _copy(base_dir, tmp_path / "m")
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(UserError, match=rf"{f} is truncated or corrupt \(header says \d+ bytes, file has 100\); "
                                        "re-copy it or delete this checkpoint"):
        load_model(full(tmp_path / "m"), "cpu", torch.float32)


def test_truncated_file_tensor_past_end(tmp_path, base_dir):
    f = _copy(base_dir, tmp_path / "m")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 10])
    with pytest.raises(UserError, match=rf"{f} is truncated or corrupt \(tensor .* ends at byte {len(data)}, "
                                        rf"file has {len(data) - 10}\)"):
        validate_weights(full(tmp_path / "m"))


def test_bad_json_header(tmp_path, base_dir):
    f = _copy(base_dir, tmp_path / "m")
    data = bytearray(f.read_bytes())
    data[8] = ord("#")
    f.write_bytes(bytes(data))
    with pytest.raises(UserError, match=rf"{f} is truncated or corrupt \(its \d+-byte header is not valid JSON\)"):
        validate_weights(full(tmp_path / "m"))


def test_offsets_disagree_with_shape(tmp_path, base_dir):
    f = _copy(base_dir, tmp_path / "m")
    data = f.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [1]
    raw = json.dumps(header, separators=(",", ":")).encode().ljust(n)  # shorter; padded with spaces like safetensors
    assert len(raw) == n
    f.write_bytes(data[:8] + raw + data[8 + n:])
    with pytest.raises(UserError, match=f"{f} is corrupt .*{name}"):
        validate_weights(full(tmp_path / "m"))


def test_tiny_file_and_corrupt_adapter_base(tmp_path, tok, base_dir):
    copy = tmp_path / "base"
    f = _copy(base_dir, copy)
    spec = disc.model_spec(save_adapter(tmp_path / "a", base_dir, tok), copy, None)
    f.write_bytes(b"abc")
    with pytest.raises(UserError, match=f"{f} is truncated or corrupt"):  # the base is checked too
        load_model(spec, "cpu", torch.float32)


# ---- tokenizers -----------------------------------------------------------------------------------------------

def test_tokenizer_round_trip_and_pad(tmp_path, tok, base_dir):
    loaded, warnings = load_tokenizer(base_dir)
    assert warnings == []
    text = "why is the cat under a blue log?"
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded.chat_template == tok.chat_template and loaded.eos_token == "<|eos|>"
    no_pad = make_tokenizer()
    no_pad.pad_token = None
    no_pad.save_pretrained(tmp_path / "np")
    loaded, _ = load_tokenizer(tmp_path / "np")
    assert loaded.pad_token == loaded.eos_token == "<|eos|>"


def test_tokenizer_fallback_with_warning(tmp_path, base_dir):
    (tmp_path / "ckpt").mkdir()
    loaded, warnings = load_tokenizer(tmp_path / "ckpt", fallback=base_dir)
    assert loaded.eos_token == "<|eos|>"
    assert len(warnings) == 1 and "has no tokenizer" in warnings[0] and str(base_dir) in warnings[0]
    with pytest.raises(UserError, match=rf"no tokenizer in {tmp_path / 'ckpt'}"):
        load_tokenizer(tmp_path / "ckpt")


def test_tokenizers_compatible(tok):
    from dpo_doctor.zoo import tiny

    same = make_tokenizer()
    assert tokenizers_compatible(tok, same) is None
    other = tiny.build_tokenizer(["completely different words here"] * 5, vocab_size=270)
    reason = tokenizers_compatible(tok, other)
    assert reason is not None and "vocabularies differ" in reason and "\n" not in reason


# ---- fingerprints ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("whole_below", [64 << 20, 0])  # small files hashed whole; big ones sampled per tensor
def test_fingerprint_identity(tmp_path, tok, base_dir, monkeypatch, whole_below):
    monkeypatch.setattr(weights, "_HASH_WHOLE_BELOW", whole_below)
    shutil.copytree(base_dir, tmp_path / "copy")
    other = save_full(tmp_path / "other", tok, seed=11)
    fp = weights_fingerprint(full(base_dir))
    assert weights_fingerprint(full(tmp_path / "copy")) == fp  # path-independent
    assert weights_fingerprint(full(other)) != fp
    a1 = disc.model_spec(save_adapter(tmp_path / "a1", base_dir, seed=1), None, None)
    a2 = disc.model_spec(save_adapter(tmp_path / "a2", base_dir, seed=2), None, None)
    assert weights_fingerprint(a1) != weights_fingerprint(a2)
    rebased = ModelSpec(path=a1.path, kind="adapter", base=other)
    assert weights_fingerprint(rebased) != weights_fingerprint(a1)  # base identity is part of it


# ---- checks before loading ----------------------------------------------------------------------------------------

def test_check_token_range(tok, base_dir):
    from dpo_doctor.engine.loading import check_token_range, model_config

    cfg = model_config(full(base_dir))
    check_token_range(cfg, tok, len(tok) - 1, str(base_dir))
    with pytest.raises(UserError, match=rf"{base_dir}: the data has token id 500 but the model's embedding has only "
                                        rf"{len(tok)} rows .*--ref"):
        check_token_range(cfg, tok, 500, str(base_dir))
    model = load_model(full(base_dir), "cpu", torch.float32)
    with pytest.raises(UserError, match=rf"the tokenizer has {len(tok)} tokens but the model's embedding has only 10 "
                                        "rows"):
        check_token_range(_Rows(10), _Tok(len(tok)), 3, "x")
    check_token_range(model, tok, 5, "x")


class _Rows:
    def __init__(self, n):
        self.vocab_size = n

    def to_dict(self):
        return {"vocab_size": self.vocab_size}


class _Tok:
    pad_token_id = eos_token_id = 0

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def test_shape_mismatch_names_file_tensor_and_shapes(tmp_path, base_dir):
    shutil.copytree(base_dir, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "hidden_size": 64, "intermediate_size": 128}))
    with pytest.raises(UserError, match=r"model.safetensors: tensor lm_head.weight has shape \[\d+, 32\] but .*"
                                        r"config.json builds \[\d+, 64\]"):
        load_model(full(tmp_path / "m"), "cpu", torch.float32)


def test_tokenizer_custom_code_needs_trust(tmp_path, tok):
    tok.save_pretrained(tmp_path / "t")
    (tmp_path / "t" / "tokenizer.json").unlink()
    cfg = json.loads((tmp_path / "t" / "tokenizer_config.json").read_text())
    cfg["auto_map"] = {"AutoTokenizer": ["tok_evil.EvilTokenizer", None]}
    (tmp_path / "t" / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="custom tokenizer code .*--trust-remote-code only if you trust"):
        load_tokenizer(tmp_path / "t")
