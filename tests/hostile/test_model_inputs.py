"""Hostile model inputs through the installed console script: bad weights, configs, adapters, checkpoint folders,
pickles, custom code and cache entries end in one line and exit 2 (or a warning and exit 0), never a traceback.

Each case copies the session's tiny Llama (tests/conftest.py `tiny_dir`) into a run folder, breaks one thing, and
runs `dpo-doctor scan RUN --ref REF --data PAIRS --no-generate --out TMP` in a subprocess.
"""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.hostile.conftest import assert_user_error, run_cli

# Cases that pass once the lead calls engine.loading.check_token_range from the pipeline; until then they are
# expected to fail. Remove the marker when wired.


# ---- builders -------------------------------------------------------------------------------------------------

def scan(run: Path, ref: Path, pairs: Path, tmp: Path, *extra: str):
    return run_cli("scan", run, "--ref", ref, "--data", pairs, "--no-generate", "--out", tmp / "out",
                   "--cache-dir", tmp / "cache", *extra)


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def drop_key(path: Path, key: str) -> None:
    data = json.loads(path.read_text())
    data.pop(key)
    path.write_text(json.dumps(data))


def assert_ok_with_warning(proc, *needles: str) -> None:
    detail = f"\nrc={proc.returncode}\nstderr:\n{proc.stderr[-3000:]}\nstdout:\n{proc.stdout[-3000:]}"
    assert proc.returncode == 0, "expected exit 0" + detail
    assert "Traceback" not in proc.stderr + proc.stdout, detail
    report = json.loads((Path(proc.args[proc.args.index("--out") + 1]) / "report.json").read_text())
    text = " ".join(report.get("warnings", []))
    for needle in needles:
        assert needle in text, f"{needle!r} not in the report's warnings: {report.get('warnings')}" + detail


@pytest.fixture()
def run(tmp_path, tiny_dir) -> Path:
    """A run folder with one good checkpoint (a copy of the reference)."""
    copy_model(tiny_dir, tmp_path / "run" / "checkpoint-1")
    return tmp_path / "run"


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_dir) -> Path:
    """A LoRA (q_proj, v_proj, r=4) on the tiny Llama."""
    from tests.test_discover import save_adapter

    return save_adapter(tmp_path_factory.mktemp("adapter") / "lora", tiny_dir)


@pytest.fixture()
def lora_run(tmp_path, adapter_dir) -> Path:
    copy_model(adapter_dir, tmp_path / "run" / "checkpoint-20")
    return tmp_path / "run"


# ---- weights --------------------------------------------------------------------------------------------------

def test_config_says_hidden_64_weights_are_32(run, tiny_dir, pairs_jsonl, tmp_path):
    edit_json(run / "checkpoint-1" / "config.json", hidden_size=64, intermediate_size=128)
    assert_user_error(scan(run, tiny_dir, pairs_jsonl, tmp_path), "checkpoint-1/model.safetensors",
                      "lm_head.weight", "[300, 32]", "[300, 64]", "config.json")


def test_truncated_safetensors(run, tiny_dir, pairs_jsonl, tmp_path):
    f = run / "checkpoint-1" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-1000])
    assert_user_error(scan(run, tiny_dir, pairs_jsonl, tmp_path), "model.safetensors", "truncated", "re-copy")


def test_junk_safetensors_header(run, tiny_dir, pairs_jsonl, tmp_path):
    f = run / "checkpoint-1" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:20] = b"\xff\xfejunk!!junk"
    f.write_bytes(bytes(data))
    assert_user_error(scan(run, tiny_dir, pairs_jsonl, tmp_path), "model.safetensors", "header is not valid JSON")


def test_tensor_missing_from_weights(run, tiny_dir, pairs_jsonl, tmp_path):
    from safetensors.torch import load_file, save_file

    f = run / "checkpoint-1" / "model.safetensors"
    tensors = load_file(f)
    tensors.pop("model.norm.weight")
    save_file(tensors, f, metadata={"format": "pt"})
    assert_user_error(scan(run, tiny_dir, pairs_jsonl, tmp_path), "model.norm.weight", "not in the weight files")


def test_sharded_index_points_at_missing_shard(tmp_path, tiny_dir, pairs_jsonl):
    from transformers import AutoModelForCausalLM

    ckpt = tmp_path / "run" / "checkpoint-1"
    AutoModelForCausalLM.from_pretrained(tiny_dir).save_pretrained(ckpt, max_shard_size="20KB")
    next(ckpt.glob("model-00002-*.safetensors")).unlink()
    assert_user_error(scan(tmp_path / "run", tiny_dir, pairs_jsonl, tmp_path), "missing shard model-00002",
                      "model.safetensors.index.json")


def test_config_json_cut_off(run, tiny_dir, pairs_jsonl, tmp_path):
    cfg = run / "checkpoint-1" / "config.json"
    cfg.write_text(cfg.read_text()[:120])
    assert_user_error(scan(run, tiny_dir, pairs_jsonl, tmp_path), "checkpoint-1/config.json", "not valid JSON",
                      "line", "cut off")


# ---- pickles (security pair) ------------------------------------------------------------------------------------

class _Payload:
    """Unpickling this writes a marker file: proves whether pytorch_model.bin was unpickled unsafely."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _pickle_only(run: Path, marker: Path) -> Path:
    import torch

    ckpt = run / "checkpoint-1"
    (ckpt / "model.safetensors").unlink()
    torch.save({"model.embed_tokens.weight": torch.zeros(2), "evil": _Payload(str(marker))}, ckpt / "pytorch_model.bin")
    return ckpt


def test_payload_is_live(tmp_path):
    """The payload really runs code under an unsafe load (so the two tests below prove something)."""
    import torch

    marker = tmp_path / "LIVE"
    torch.save({"evil": _Payload(str(marker))}, tmp_path / "p.bin")
    torch.load(tmp_path / "p.bin", weights_only=False)
    assert marker.exists()


def test_pickled_weights_need_trust_pickles(run, tiny_dir, pairs_jsonl, tmp_path):
    marker = tmp_path / "PWNED"
    _pickle_only(run, marker)
    assert_user_error(scan(run, tiny_dir, pairs_jsonl, tmp_path), "pytorch_model.bin", "--trust-pickles")
    assert not marker.exists()


def test_trust_pickles_still_refuses_code(run, tiny_dir, pairs_jsonl, tmp_path):
    marker = tmp_path / "PWNED"
    _pickle_only(run, marker)
    assert_user_error(scan(run, tiny_dir, pairs_jsonl, tmp_path, "--trust-pickles"), "pytorch_model.bin",
                      "weights_only=True", "safe_serialization=True")
    assert not marker.exists()


def test_trust_pickles_loads_plain_state_dict(run, tiny_dir, pairs_jsonl, tmp_path):
    import torch
    from safetensors.torch import load_file

    ckpt = run / "checkpoint-1"
    torch.save(load_file(ckpt / "model.safetensors"), ckpt / "pytorch_model.bin")
    (ckpt / "model.safetensors").unlink()
    proc = scan(run, tiny_dir, pairs_jsonl, tmp_path, "--trust-pickles")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]


# ---- custom code and architecture -------------------------------------------------------------------------------

def test_auto_map_needs_trust_remote_code(run, tiny_dir, pairs_jsonl, tmp_path):
    edit_json(run / "checkpoint-1" / "config.json",
              auto_map={"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"})
    assert_user_error(scan(run, tiny_dir, pairs_jsonl, tmp_path), "auto_map", "--trust-remote-code",
                      "only if you trust")


def test_unknown_model_type(run, tiny_dir, pairs_jsonl, tmp_path):
    edit_json(run / "checkpoint-1" / "config.json", model_type="llamma")
    assert_user_error(scan(run, tiny_dir, pairs_jsonl, tmp_path), '"llamma"', "not known to transformers",
                      "did you mean llama", "--trust-remote-code")


def test_other_architecture_is_a_warning(tmp_path, tiny_dir, pairs_jsonl):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    ckpt = tmp_path / "run" / "checkpoint-20"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=512)).save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    assert_ok_with_warning(scan(tmp_path / "run", tiny_dir, pairs_jsonl, tmp_path),
                           "checkpoint-20 is gpt2, the reference is llama")


# ---- adapters -------------------------------------------------------------------------------------------------

def test_adapter_config_cut_off(lora_run, tiny_dir, pairs_jsonl, tmp_path):
    cfg = lora_run / "checkpoint-20" / "adapter_config.json"
    cfg.write_text(cfg.read_text()[:150])
    assert_user_error(scan(lora_run, tiny_dir, pairs_jsonl, tmp_path), "checkpoint-20/adapter_config.json",
                      "not valid JSON", "column", "cut off")


@pytest.mark.parametrize("key", ["r", "lora_alpha", "target_modules", "peft_type"])
def test_adapter_config_key_missing(lora_run, tiny_dir, pairs_jsonl, tmp_path, key):
    drop_key(lora_run / "checkpoint-20" / "adapter_config.json", key)
    assert_user_error(scan(lora_run, tiny_dir, pairs_jsonl, tmp_path), "adapter_config.json", f"no '{key}' key")


@pytest.mark.parametrize("key, value, shown", [("r", "four", '"four"'), ("lora_alpha", -8, "-8"),
                                               ("target_modules", [], "[]"), ("r", True, "true")])
def test_adapter_config_key_ill_typed(lora_run, tiny_dir, pairs_jsonl, tmp_path, key, value, shown):
    edit_json(lora_run / "checkpoint-20" / "adapter_config.json", **{key: value})
    assert_user_error(scan(lora_run, tiny_dir, pairs_jsonl, tmp_path), "adapter_config.json", f"{key} is {shown}",
                      "expected")


def test_adapter_targets_match_nothing(lora_run, tiny_dir, pairs_jsonl, tmp_path):
    edit_json(lora_run / "checkpoint-20" / "adapter_config.json", target_modules=["q_prj", "v_proj"])
    assert_user_error(scan(lora_run, tiny_dir, pairs_jsonl, tmp_path), "['q_prj']", "did you mean q_proj",
                      "k_proj", "--base")


def test_adapter_lora_shapes_do_not_fit_base(lora_run, tiny_dir, pairs_jsonl, tmp_path):
    from safetensors.torch import load_file, save_file

    f = lora_run / "checkpoint-20" / "adapter_model.safetensors"
    tensors = load_file(f)
    name = next(k for k in sorted(tensors) if "lora_A" in k)
    tensors[name] = tensors[name][:, :16].contiguous()  # (r, 16), the base's q_proj takes 32 inputs
    save_file(tensors, f, metadata={"format": "pt"})
    assert_user_error(scan(lora_run, tiny_dir, pairs_jsonl, tmp_path), name, "[4, 16]", "(r, 32)", "--base")


# ---- checkpoint folders -----------------------------------------------------------------------------------------

def test_non_ascii_digits_are_no_step(run, tiny_dir, pairs_jsonl, tmp_path):
    copy_model(tiny_dir, run / "checkpoint-\u0663")
    assert_ok_with_warning(scan(run, tiny_dir, pairs_jsonl, tmp_path), "checkpoint-\u0663 skipped",
                           "no step number")


def test_checkpoint_final_is_skipped_with_warning(run, tiny_dir, pairs_jsonl, tmp_path):
    copy_model(tiny_dir, run / "checkpoint-final")
    assert_ok_with_warning(scan(run, tiny_dir, pairs_jsonl, tmp_path), "checkpoint-final skipped")


def test_checkpoint_without_weights_is_skipped_with_warning(run, tiny_dir, pairs_jsonl, tmp_path):
    ckpt = copy_model(tiny_dir, run / "checkpoint-3")
    (ckpt / "model.safetensors").unlink()
    assert_ok_with_warning(scan(run, tiny_dir, pairs_jsonl, tmp_path), "checkpoint-3 skipped",
                           "config but no weights")


def test_only_weightless_checkpoints(tmp_path, tiny_dir, pairs_jsonl):
    ckpt = copy_model(tiny_dir, tmp_path / "run" / "checkpoint-3")
    (ckpt / "model.safetensors").unlink()
    assert_user_error(scan(tmp_path / "run", tiny_dir, pairs_jsonl, tmp_path), "No checkpoints found",
                      "checkpoint-3 skipped")


def test_checkpoints_pattern_matches_nothing(run, tiny_dir, pairs_jsonl, tmp_path):
    assert_user_error(scan(run, tiny_dir, pairs_jsonl, tmp_path, "--checkpoints", "checkpoint-l"),
                      "--checkpoints checkpoint-l matches no checkpoint", "did you mean checkpoint-1", "available")


def test_skip_every_checkpoint(run, tiny_dir, pairs_jsonl, tmp_path):
    assert_user_error(scan(run, tiny_dir, pairs_jsonl, tmp_path, "--skip-checkpoint", "checkpoint-*"),
                      "no checkpoint to scan", "checkpoint-1")


# ---- vocabulary -------------------------------------------------------------------------------------------------

def _small_vocab_model(tiny_dir: Path, dst: Path, rows: int) -> Path:
    """The tiny tokenizer (300 tokens) next to a Llama with only `rows` embedding rows."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=rows, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=0, pad_token_id=1, bos_token_id=None, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(dst)
    AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(dst)
    return dst


def test_data_ids_beyond_embedding(tmp_path, tiny_dir, pairs_jsonl):
    ref = _small_vocab_model(tiny_dir, tmp_path / "ref", rows=40)
    copy_model(ref, tmp_path / "run" / "checkpoint-1")
    assert_user_error(scan(tmp_path / "run", ref, pairs_jsonl, tmp_path), "token id", "40 rows", "--ref")


def test_tokenizer_larger_than_embedding(tmp_path, tiny_dir, pairs_jsonl):
    ref = _small_vocab_model(tiny_dir, tmp_path / "ref", rows=299)
    copy_model(ref, tmp_path / "run" / "checkpoint-1")
    assert_user_error(scan(tmp_path / "run", ref, pairs_jsonl, tmp_path), "300 tokens", "299 rows", "--ref")


# ---- cache ------------------------------------------------------------------------------------------------------

def test_damaged_cache_entry_is_rescored_and_replaced(run, tiny_dir, pairs_jsonl, tmp_path):
    assert scan(run, tiny_dir, pairs_jsonl, tmp_path).returncode == 0
    entries = sorted((tmp_path / "cache" / "scores").glob("*.npz"))
    assert len(entries) == 1  # checkpoint-1 is a copy of the reference: one key
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    proc = scan(run, tiny_dir, pairs_jsonl, tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    with np.load(entries[0], allow_pickle=False) as f:
        assert len(f["logp_chosen"]) == 12 and not np.isnan(f["logp_chosen"]).any()
    assert not [p for p in entries[0].parent.iterdir() if p.suffix != ".npz"]  # no temp files left


def test_damaged_cache_entry_note_is_reported(run, tiny_dir, pairs_jsonl, tmp_path):
    assert scan(run, tiny_dir, pairs_jsonl, tmp_path).returncode == 0
    entry = sorted((tmp_path / "cache" / "scores").glob("*.npz"))[0]
    entry.write_bytes(b"junk")
    assert_ok_with_warning(scan(run, tiny_dir, pairs_jsonl, tmp_path), f"score cache entry {entry}", "damaged")


def test_pickle_file_is_not_loaded_as_cache(run, tiny_dir, pairs_jsonl, tmp_path):
    """A cache entry replaced by a pickle is never unpickled (allow_pickle=False): it is junk, rescored."""
    assert scan(run, tiny_dir, pairs_jsonl, tmp_path).returncode == 0
    marker = tmp_path / "PWNED"
    for entry in (tmp_path / "cache" / "scores").glob("*.npz"):
        entry.write_bytes(pickle.dumps(_Payload(str(marker))))
    proc = scan(run, tiny_dir, pairs_jsonl, tmp_path)
    assert proc.returncode == 0 and not marker.exists(), proc.stderr[-3000:]


# ---- issue 21: adapters, configs, custom code, vocabulary ---------------------------------------------------------

def test_adapter_rank_disagrees_with_its_config(lora_run, tiny_dir, pairs_jsonl, tmp_path):
    """The tensors are rank 4; adapter_config.json says r = 8: PEFT would fail deep inside load_state_dict."""
    edit_json(lora_run / "checkpoint-20" / "adapter_config.json", r=8)
    assert_user_error(scan(lora_run, tiny_dir, pairs_jsonl, tmp_path), "adapter_model.safetensors", "r = 8",
                      "[4, 32]", "re-save")


def test_adapter_config_nested_too_deeply(lora_run, tiny_dir, pairs_jsonl, tmp_path):
    cfg = lora_run / "checkpoint-20" / "adapter_config.json"
    cfg.write_text('{"x": ' + "[" * 200000 + "]" * 200000 + "}")
    assert_user_error(scan(lora_run, tiny_dir, pairs_jsonl, tmp_path), "adapter_config.json", "nested too deeply")


def _custom_tokenizer_dir(tiny_dir: Path, dst: Path) -> Path:
    """The tiny tokenizer without tokenizer.json, whose tokenizer_config.json names custom code that subclasses the
    fast tokenizer and only tags itself (so trusting it is harmless here)."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(dst)
    (dst / "tokenization_custom.py").write_text(
        "import json, os\n"
        "from transformers import PreTrainedTokenizerFast\n\n"
        "class CustomTokenizer(PreTrainedTokenizerFast):\n"
        "    custom_code_ran = True\n\n"
        "    @classmethod\n"
        "    def from_pretrained(cls, path, *args, **kwargs):\n"
        "        cfg = json.load(open(os.path.join(str(path), 'tokenizer_config.json')))\n"
        "        keep = {k: cfg[k] for k in ('eos_token', 'pad_token', 'bos_token', 'unk_token') if cfg.get(k)}\n"
        "        return cls(tokenizer_file=os.path.join(str(path), 'tokenizer_file.json'), **keep)\n")
    cfg = json.loads((dst / "tokenizer_config.json").read_text())
    cfg["auto_map"] = {"AutoTokenizer": [None, "tokenization_custom.CustomTokenizer"]}
    cfg["tokenizer_class"] = "CustomTokenizer"
    (dst / "tokenizer_config.json").write_text(json.dumps(cfg))
    (dst / "tokenizer.json").rename(dst / "tokenizer_file.json")  # no tokenizer.json: AutoTokenizer's path
    return dst


def test_trust_remote_code_reaches_the_tokenizer(tmp_path, tiny_dir, pairs_jsonl):
    ref = copy_model(tiny_dir, tmp_path / "ref")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (ref / name).unlink(missing_ok=True)
    _custom_tokenizer_dir(tiny_dir, tmp_path / "tok")
    for f in (tmp_path / "tok").iterdir():
        shutil.copy(f, ref / f.name)
    copy_model(tiny_dir, tmp_path / "run" / "checkpoint-1")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / "run" / "checkpoint-1" / name).unlink(missing_ok=True)
    assert_user_error(scan(tmp_path / "run", ref, pairs_jsonl, tmp_path), "custom tokenizer code",
                      "--trust-remote-code")
    proc = scan(tmp_path / "run", ref, pairs_jsonl, tmp_path, "--trust-remote-code")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_native_model_type_with_auto_map_loads_natively(run, tiny_dir, pairs_jsonl, tmp_path):
    """config.json names custom code for a model type transformers has (llama): loaded with the native class, warned."""
    edit_json(run / "checkpoint-1" / "config.json",
              auto_map={"AutoModelForCausalLM": "modeling_llama_custom.LlamaForCausalLM"})
    assert_ok_with_warning(scan(run, tiny_dir, pairs_jsonl, tmp_path), "auto_map", "native llama",
                           "--trust-remote-code")


def test_checkpoint_with_more_embedding_rows_and_no_tokenizer(tmp_path, tiny_dir, pairs_jsonl):
    """Training added 17 tokens (resize_token_embeddings) but saved no tokenizer: the pairs score with the reference's
    tokenizer; generation probes cannot compare vocabularies of different sizes, so they are refused in one line."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    rows = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(rows + 17)
    ckpt = tmp_path / "run" / "checkpoint-1"
    model.save_pretrained(ckpt)
    proc = run_cli("scan", tmp_path / "run", "--ref", tiny_dir, "--data", pairs_jsonl, "--out", tmp_path / "out",
                   "--cache-dir", tmp_path / "cache", "--max-prompts", 4, "--samples-per-prompt", 2,
                   "--max-new-tokens", 16)
    assert_user_error(proc, "checkpoint-1", "17 more", "--no-generate", "--ref")
    proc = scan(tmp_path / "run", tiny_dir, pairs_jsonl, tmp_path)  # pairs only: the reference's ids all fit
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
