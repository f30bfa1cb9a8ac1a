"""Discovery on tiny runs laid out as TRL / transformers / PEFT write them."""

import json
import pickle
import shutil
from pathlib import Path

import pytest

from dpo_doctor.zoo import tiny
from dpo_doctor.discover import discover
from dpo_doctor.weights import weight_files
from dpo_doctor.errors import UserError


# ---- builders (also imported by test_loading) -----------------------------------------------------------------

def make_tokenizer():
    return tiny.build_tokenizer(["the cat sat on the mat", "a dog ran under a log", "why is the sky blue?"] * 5,
                                vocab_size=280)


def save_full(path: Path, tok, seed: int = 0, **save_kwargs) -> Path:
    """A full-weight checkpoint dir (config.json + safetensors + tokenizer)."""
    model = tiny.build_model(tok, hidden=32, layers=2, heads=2, seed=seed)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, **save_kwargs)
    tok.save_pretrained(path)
    return path


def lora_model(base_dir: Path, seed: int = 0, adapters=("default",)):
    """A PEFT LoRA on the base loaded from `base_dir` (so base_model_name_or_path = base_dir), with random B
    (PEFT initialises B = 0, which would make the adapter a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)  # lora_A is drawn at wrap time
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(base, config, adapter_name=adapters[0])
    for name in adapters[1:]:
        model.add_adapter(name, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return model.eval()


def save_adapter(path: Path, base_dir: Path, tok=None, seed: int = 0, adapters=("default",)) -> Path:
    model = lora_model(base_dir, seed=seed, adapters=adapters)
    model.save_pretrained(path)
    if tok is not None:
        tok.save_pretrained(path)
    return path


def junk(ckpt: Path) -> None:
    """Files TRL writes next to the weights that discovery must ignore."""
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "rng_state_1.pth", "scaler.pt"):
        (ckpt / name).write_bytes(b"not a model")
    (ckpt / "global_step30").mkdir(exist_ok=True)


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tok) -> Path:
    return save_full(tmp_path_factory.mktemp("base") / "base", tok, seed=0)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tok) -> Path:
    """checkpoint-2, -10, -30 (string order would put 10 first), junk files, a runs/ folder."""
    run = tmp_path_factory.mktemp("runs") / "exp1"
    for seed, step in enumerate((10, 2, 30)):
        junk(save_full(run / f"checkpoint-{step}", tok, seed=seed + 1))
    (run / "runs").mkdir()
    (run / "runs" / "events.out.tfevents.1").write_bytes(b"x")
    return run


# ---- full weights ---------------------------------------------------------------------------------------------

def test_checkpoints_ordered_by_step_number(full_run):
    run = discover(full_run)
    assert [c.name for c in run.checkpoints] == ["checkpoint-2", "checkpoint-10", "checkpoint-30"]
    assert [c.step for c in run.checkpoints] == [2, 10, 30]
    assert all(c.spec.kind == "full" and c.spec.base is None for c in run.checkpoints)
    assert run.name == "exp1"
    assert run.reference is None and run.reference_source == "none"
    assert any("--ref" in w for w in run.warnings)
    assert run.train_config == {}


def test_full_ref(full_run, base_dir):
    run = discover(full_run, ref=base_dir)
    assert run.reference.path == base_dir.resolve() and run.reference.kind == "full"
    assert run.reference_source == "--ref"


def test_root_final_model_step_from_trainer_state(tmp_path, tok):
    run_dir = tmp_path / "run"
    save_full(run_dir / "checkpoint-5", tok, seed=1)
    save_full(run_dir, tok, seed=2)
    (run_dir / "trainer_state.json").write_text(json.dumps({"global_step": 7, "log_history": []}))
    run = discover(run_dir)
    assert [(c.name, c.step) for c in run.checkpoints] == [("checkpoint-5", 5), ("final", 7)]
    assert run.checkpoints[1].spec.path == run_dir.resolve()


def test_root_final_without_state_is_after_last_checkpoint(tmp_path, tok):
    run_dir = tmp_path / "run"
    save_full(run_dir / "checkpoint-5", tok, seed=1)
    save_full(run_dir, tok, seed=2)
    assert [(c.name, c.step) for c in discover(run_dir).checkpoints] == [("checkpoint-5", 5), ("final", 6)]


def test_root_duplicate_of_last_checkpoint_is_dropped(tmp_path, tok):
    run_dir = tmp_path / "run"
    save_full(run_dir / "checkpoint-5", tok, seed=1)
    save_full(run_dir / "checkpoint-9", tok, seed=2)
    save_full(run_dir, tok, seed=2)  # same seed -> same weights as checkpoint-9
    run = discover(run_dir)
    assert [c.name for c in run.checkpoints] == ["checkpoint-5", "checkpoint-9"]
    assert any("same weights as checkpoint-9" in w for w in run.warnings)


def test_single_model_dir_is_a_run_of_one(base_dir):
    run = discover(base_dir)
    assert len(run.checkpoints) == 1
    assert run.checkpoints[0].name == "final" and run.checkpoints[0].step == 0


def test_checkpoint_dir_given_directly_keeps_its_name(full_run):
    run = discover(full_run / "checkpoint-10")
    assert [(c.name, c.step) for c in run.checkpoints] == [("checkpoint-10", 10)]


def test_sharded_weights(tmp_path, tok):
    ckpt = save_full(tmp_path / "run" / "checkpoint-3", tok, seed=1, max_shard_size="100KB")
    assert (ckpt / "model.safetensors.index.json").exists()
    run = discover(tmp_path / "run")
    files = weight_files(run.checkpoints[0].spec.path, "full")
    assert len(files) > 1 and all(f.name.startswith("model-0") for f in files)


def test_deepspeed_only_checkpoint_is_skipped_with_warning(tmp_path, tok):
    save_full(tmp_path / "run" / "checkpoint-3", tok)
    (tmp_path / "run" / "checkpoint-6" / "global_step6").mkdir(parents=True)
    run = discover(tmp_path / "run")
    assert [c.name for c in run.checkpoints] == ["checkpoint-3"]
    assert any("checkpoint-6" in w and "zero_to_fp32" in w for w in run.warnings)


# ---- adapters -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, base_dir, tok) -> Path:
    run = tmp_path_factory.mktemp("lora") / "lora-run"
    for step in (20, 4):
        junk(save_adapter(run / f"checkpoint-{step}", base_dir, tok, seed=step))
    return run


def test_new_lora_reference_is_its_base(lora_run, base_dir):
    run = discover(lora_run)
    assert [c.step for c in run.checkpoints] == [4, 20]
    assert all(c.spec.kind == "adapter" and c.spec.base == base_dir.resolve() for c in run.checkpoints)
    assert run.reference == type(run.reference)(path=base_dir.resolve(), kind="full", base=None)
    assert run.reference_source == "adapter base"


def _rebase(adapter_dir: Path, name: str) -> None:
    cfg_path = adapter_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = name
    cfg_path.write_text(json.dumps(cfg))


def test_missing_adapter_base_raises_then_overrides_work(tmp_path, base_dir, tok):
    ckpt = save_adapter(tmp_path / "run" / "checkpoint-1", base_dir, tok)
    _rebase(ckpt, "/home/u/llama")
    with pytest.raises(UserError, match=r"checkpoint-1 names base /home/u/llama which does not exist here; "
                                        r"pass --base PATH"):
        discover(tmp_path / "run")
    assert discover(tmp_path / "run", base=base_dir).checkpoints[0].spec.base == base_dir.resolve()
    by_ref = discover(tmp_path / "run", ref=base_dir)
    assert by_ref.checkpoints[0].spec.base == base_dir.resolve() and by_ref.reference_source == "--ref"


def test_base_override_must_be_a_full_model(tmp_path, base_dir, lora_run):
    with pytest.raises(UserError, match="--base .*does not exist"):
        discover(lora_run, base=tmp_path / "nope")
    with pytest.raises(UserError, match="--base .*is an adapter"):
        discover(lora_run, base=lora_run / "checkpoint-4")


def test_relative_base_resolved_against_adapter_dir(tmp_path, base_dir, tok):
    shutil.copytree(base_dir, tmp_path / "base")
    ckpt = save_adapter(tmp_path / "run" / "checkpoint-1", base_dir, tok)
    _rebase(ckpt, "../../base")
    assert discover(tmp_path / "run").checkpoints[0].spec.base == (tmp_path / "base").resolve()


def test_ref_sub_adapter_is_the_default_reference(tmp_path, base_dir, tok):
    run_dir = tmp_path / "run"
    for step in (2, 4):
        save_adapter(run_dir / f"checkpoint-{step}", base_dir, tok, seed=step, adapters=("default", "ref"))
    assert (run_dir / "checkpoint-4" / "ref" / "adapter_model.safetensors").exists()
    run = discover(run_dir)
    assert run.reference_source == "ref/ sub-adapter"
    assert run.reference.kind == "adapter" and run.reference.adapter_name_hint == "ref"
    assert run.reference.path == (run_dir / "checkpoint-4" / "ref").resolve()
    assert run.reference.base == base_dir.resolve()
    assert [c.name for c in run.checkpoints] == ["checkpoint-2", "checkpoint-4"]  # ref/ is not a checkpoint
    explicit = discover(run_dir, ref=base_dir)
    assert explicit.reference_source == "--ref" and any("ref/" in w for w in explicit.warnings)


def test_sft_lora_reference_resolves_its_own_base(tmp_path, base_dir, lora_run, tok):
    sft = save_adapter(tmp_path / "sft", base_dir, tok, seed=99)
    run = discover(lora_run, ref=sft)
    assert run.reference.kind == "adapter" and run.reference.base == base_dir.resolve()
    _rebase(sft, "/gone/base")
    with pytest.raises(UserError, match="sft names base /gone/base"):
        discover(lora_run, ref=sft)
    assert discover(lora_run, ref=sft, base=base_dir).reference.base == base_dir.resolve()


# ---- bad input ------------------------------------------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path / 'nope'} does not exist"):
        discover(tmp_path / "nope")
    with pytest.raises(UserError, match="--ref .*nope2 does not exist"):
        discover(tmp_path, ref=tmp_path / "nope2")


def test_no_checkpoints(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "optimizer.pt").write_bytes(b"x")
    with pytest.raises(UserError, match=rf"No checkpoints found in {tmp_path}: expected sub-folders with "
                                        r"config.json or adapter_config.json \(e.g. checkpoint-500/\)."):
        discover(tmp_path)


def test_config_without_weights(tmp_path, tok):
    ckpt = save_full(tmp_path / "run" / "checkpoint-8", tok)
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(UserError, match="No checkpoints found .*checkpoint-8 skipped: it has a config but no weights"):
        discover(tmp_path / "run")
    with pytest.raises(UserError, match="checkpoint-8 has a config but no weights"):  # named directly
        discover(ckpt)
    (ckpt / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(UserError, match="checkpoint-8 holds only pickled weights .*pass --trust-pickles"):
        discover(tmp_path / "run")


def test_missing_shard(tmp_path, tok):
    ckpt = save_full(tmp_path / "run" / "checkpoint-3", tok, max_shard_size="100KB")
    next(ckpt.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(UserError, match="checkpoint-3 is missing shard model-00002"):
        weight_files(ckpt, "full")


def test_malformed_adapter_config(tmp_path, base_dir, tok):
    ckpt = save_adapter(tmp_path / "run" / "checkpoint-1", base_dir, tok)
    (ckpt / "adapter_config.json").write_text("{not json")
    with pytest.raises(UserError, match="adapter_config.json is not valid JSON"):
        discover(tmp_path / "run")


# ---- the run's settings ---------------------------------------------------------------------------------------

class _Boom:
    """Unpickling this touches a marker file: proves whether training_args.bin was executed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("trust", [False, True])
def test_training_args_bin_never_executed(full_run, tmp_path, trust):
    """With or without --trust-pickles, training_args.bin is walked as inert records: the marker is never touched."""
    marker = tmp_path / "UNPICKLED"
    ckpt = full_run / "checkpoint-30"
    (ckpt / "training_args.bin").write_bytes(pickle.dumps(_Boom(str(marker))))
    try:
        run = discover(full_run, trust_pickles=trust)
        assert not marker.exists() and run.train_config == {}
        assert any("training_args.bin" in w and "holds no training arguments" in w for w in run.warnings)
    finally:
        (ckpt / "training_args.bin").unlink()


def test_training_args_bin_read_without_trust(tmp_path, tok):
    import types

    import torch

    run_dir = tmp_path / "run"
    save_full(run_dir / "checkpoint-1", tok)
    torch.save(types.SimpleNamespace(beta=0.25, loss_type=["sigmoid"], label_smoothing=0.0, output_dir="x"),
               run_dir / "checkpoint-1" / "training_args.bin")
    run = discover(run_dir)
    assert run.train_config == {"beta": 0.25, "loss_type": "sigmoid", "label_smoothing": 0.0}
    assert run.train_config_source == "training_args.bin (read without unpickling)"


def test_our_trainer_config_json_wins(tmp_path, tok):
    run_dir = tmp_path / "run"
    save_full(run_dir / "checkpoint-1", tok)
    (run_dir / "dpo_doctor_config.json").write_text(json.dumps({"beta": 0.3, "loss_type": "ipo"}))
    (run_dir / "checkpoint-1" / "training_args.bin").write_bytes(b"\x80garbage")
    run = discover(run_dir, trust_pickles=True)
    assert run.train_config == {"beta": 0.3, "loss_type": "ipo"}
    assert not any("training_args" in w for w in run.warnings)


def test_reference_recorded_by_our_trainer(tmp_path, tok, base_dir):
    """dpo_doctor_config.json names the reference; an interrupted run has it only in its checkpoints."""
    run_dir = tmp_path / "run"
    save_full(run_dir / "checkpoint-1", tok, seed=1)
    (run_dir / "checkpoint-1" / "dpo_doctor_config.json").write_text(
        json.dumps({"trainer": "dpo-doctor", "beta": 0.2, "reference": str(base_dir)}))
    run = discover(run_dir)
    assert run.reference.path == base_dir.resolve() and run.reference_source == "run config"
    assert run.train_config["beta"] == 0.2
    assert discover(run_dir, ref=base_dir / ".." / "base").reference_source == "--ref"
    (run_dir / "checkpoint-1" / "dpo_doctor_config.json").write_text(json.dumps({"reference": "/gone/sft"}))
    gone = discover(run_dir)
    assert gone.reference is None and any("names reference /gone/sft" in w for w in gone.warnings)


# ---- checkpoint names and selection ----------------------------------------------------------------------------

def test_only_ascii_digits_are_steps(tmp_path, tok):
    save_full(tmp_path / "run" / "checkpoint-1", tok)
    save_full(tmp_path / "run" / "checkpoint-\u0663", tok)
    save_full(tmp_path / "run" / "checkpoint-final", tok)
    run = discover(tmp_path / "run")
    assert [c.name for c in run.checkpoints] == ["checkpoint-1"]
    assert any("checkpoint-\u0663 skipped" in w and "no step number" in w for w in run.warnings)
    assert any("checkpoint-final skipped" in w for w in run.warnings)


def test_select_checkpoints(full_run):
    from dpo_doctor.discover import select_checkpoints

    ckpts = discover(full_run).checkpoints
    assert [c.name for c in select_checkpoints(ckpts, (), ())] == ["checkpoint-2", "checkpoint-10", "checkpoint-30"]
    assert [c.name for c in select_checkpoints(ckpts, ("checkpoint-?0",), ())] == ["checkpoint-10", "checkpoint-30"]
    assert [c.name for c in select_checkpoints(ckpts, (), ("checkpoint-2",))] == ["checkpoint-10", "checkpoint-30"]
    with pytest.raises(UserError, match=r"--checkpoints checkpoint-3O matches no checkpoint; did you mean "
                                        r"checkpoint-30\? Available: checkpoint-2, checkpoint-10, checkpoint-30"):
        select_checkpoints(ckpts, ("checkpoint-3O",), ())
    with pytest.raises(UserError, match="--skip-checkpoint zzz matches no checkpoint; available: checkpoint-2"):
        select_checkpoints(ckpts, (), ("zzz",))
    with pytest.raises(UserError, match="leaves no checkpoint to scan"):
        select_checkpoints(ckpts, ("checkpoint-1*",), ("checkpoint-*",))


def test_architecture_differs_from_reference(tmp_path, tok, base_dir):
    from transformers import GPT2Config, GPT2LMHeadModel

    ckpt = tmp_path / "run" / "checkpoint-20"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2)).save_pretrained(ckpt)
    run = discover(tmp_path / "run", ref=base_dir)
    assert any(w.startswith("checkpoint-20 is gpt2, the reference is llama") for w in run.warnings)


@pytest.mark.parametrize("change, message", [
    ({"r": "8"}, 'r is "8", expected a positive integer'),
    ({"target_modules": ["q_proj", 3]}, "target_modules is"),
    ({"lora_alpha": None}, "lora_alpha is null"),
])
def test_adapter_config_types(tmp_path, base_dir, tok, change, message):
    ckpt = save_adapter(tmp_path / "run" / "checkpoint-1", base_dir, tok)
    cfg = json.loads((ckpt / "adapter_config.json").read_text())
    (ckpt / "adapter_config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(UserError, match=message):
        discover(tmp_path / "run")
