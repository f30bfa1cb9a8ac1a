"""The run's own settings (beta, loss_type) from every file trainers save, read with nothing executed.

The marker tests prove the pickle reader runs nothing: each pickle would touch a marker file (or import a module
that does not exist) if it were unpickled the ordinary way, and still yields its beta here.
"""

import contextlib
import json
import os
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch

from dpo_doctor.runconfig import read_train_config
from dpo_doctor.weights import InertGlobal, read_pickle_inert


class _Touch:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Ghost:
    """Pickled as a global from a module that does not exist: an ordinary unpickler fails importing it."""

    def __reduce__(self):
        return (_ghost_global, ())


def _ghost_global():
    return None


GHOST = "no_such_module_dpo_doctor_test"
_ghost_global.__module__ = GHOST
_ghost_global.__qualname__ = "run_me"
sys.modules[GHOST] = types.SimpleNamespace(run_me=_ghost_global)  # pickling it needs it; tests remove it to load


class _Args:
    """Stands for a DPOConfig whose pickle also carries code: os.system, a missing module, an enum-like value."""

    def __init__(self, marker, **fields):
        self.marker, self.fields = marker, fields

    def __reduce__(self):
        state = {**self.fields, "hook": _Touch(self.marker), "ghost": _Ghost()}
        return (types.SimpleNamespace, (), state)


def _write(path: Path, obj, how: str) -> Path:
    if how == "zip":
        torch.save(obj, path)
    elif how == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=int(how)))
    return path


@contextlib.contextmanager
def _ghost_module_gone():
    saved = sys.modules.pop(GHOST)
    try:
        yield
    finally:
        sys.modules[GHOST] = saved


@pytest.mark.parametrize("how", ["zip", "legacy", "2", "5"])
def test_malicious_training_args_gives_beta_and_runs_nothing(tmp_path, how):
    marker = tmp_path / "MARKER"
    path = _write(tmp_path / "training_args.bin", _Args(marker, beta=0.05, loss_type=["ipo"], learning_rate=1e-6), how)
    with _ghost_module_gone(), pytest.raises(ModuleNotFoundError, match=GHOST):  # the ordinary way: runs the code
        torch.load(path, weights_only=False) if how in ("zip", "legacy") else pickle.loads(path.read_bytes())
    assert marker.exists(), "the test pickle must really run code when unpickled"
    marker.unlink()
    with _ghost_module_gone():
        config = read_train_config(tmp_path, [])
        assert GHOST not in sys.modules  # nothing the pickle names was imported
    assert not marker.exists()  # nothing it names was called
    assert config.values == {"beta": 0.05, "loss_type": "ipo", "learning_rate": 1e-6}
    assert config.source == "training_args.bin (read without unpickling)"


def test_inert_records_hold_what_the_pickle_says(tmp_path):
    obj = read_pickle_inert(_write(tmp_path / "a.bin", _Args(tmp_path / "m", beta=0.2), "zip"))
    assert isinstance(obj, InertGlobal) and (obj.module, obj.qualname) == ("types", "SimpleNamespace")
    hook = obj.fields()["hook"]
    assert isinstance(hook, InertGlobal) and hook.qualname == "system" and hook.args == [f"touch {tmp_path / 'm'}"]


def test_real_trl_dpo_config(tmp_path):
    trl = pytest.importorskip("trl")
    args = trl.DPOConfig(output_dir=str(tmp_path / "o"), beta=0.03, loss_type=["sigmoid", "sft"],
                         loss_weights=[1.0, 0.5], report_to="none", use_cpu=True)
    torch.save(args, tmp_path / "training_args.bin")
    config = read_train_config(tmp_path, [])
    assert config.values["beta"] == 0.03 and config.values["loss_type"] == "sigmoid+sft"
    assert config.values["loss_weights"] == [1.0, 0.5] and config.values["max_length"] == args.max_length


@pytest.mark.parametrize("data, why", [
    (b"", "not a readable pickle"),
    (b"\x80\x04\x95\x10\x00", "not a readable pickle"),  # cut off
    (b"(" * 200000 + b".", "not a readable pickle"),  # MARKs without end: a stack of marks
    (b"\x80\x02]q\x00" + b"]" * 10 + b".", "holds no training arguments"),  # a list, no settings
])
def test_broken_training_args_is_a_warning(tmp_path, data, why):
    (tmp_path / "training_args.bin").write_bytes(data)
    config = read_train_config(tmp_path, [])
    assert config.values == {} and len(config.warnings) == 1 and why in config.warnings[0]


def test_zip_without_data_pkl(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "training_args.bin", "w") as z:
        z.writestr("x/other.txt", "hi")
    config = read_train_config(tmp_path, [])
    assert config.values == {} and "not a torch.save file" in config.warnings[0]


def test_wandb_config_yaml(tmp_path):
    files = tmp_path / "wandb" / "run-20250101_000000-abc" / "files"
    files.mkdir(parents=True)
    (files / "config.yaml").write_text("_wandb:\n  value: {cli_version: 0.19}\nbeta:\n  desc: null\n  value: 0.02\n"
                                       "loss_type:\n  value: [hinge]\nlearning_rate:\n  value: 5.0e-07\n")
    config = read_train_config(tmp_path, [])
    assert config.values == {"beta": 0.02, "loss_type": "hinge", "learning_rate": 5e-7}
    assert config.source == "W&B config.yaml"


def test_wandb_openrlhf_ipo(tmp_path):
    files = tmp_path / "wandb" / "offline-run-20250101_000000-x" / "files"
    files.mkdir(parents=True)
    (files / "config.yaml").write_text("beta:\n  value: 0.3\nipo:\n  value: true\n")
    assert read_train_config(tmp_path, []).values == {"beta": 0.3, "loss_type": "ipo"}


def test_tensorboard_args_text(tmp_path):
    writer_mod = pytest.importorskip("tensorboardX")
    w = writer_mod.SummaryWriter(str(tmp_path / "runs" / "Jan01_host"))
    w.add_scalar("train/loss", 0.6, 1)
    w.add_text("args", json.dumps({"beta": 0.07, "loss_type": ["robust"], "label_smoothing": 0.1}))
    w.close()
    config = read_train_config(tmp_path, [])
    assert config.values == {"beta": 0.07, "loss_type": "robust", "label_smoothing": 0.1}
    assert config.source == "TensorBoard args"


def test_llama_factory_training_args_yaml(tmp_path):
    """LLaMA-Factory keeps beta out of training_args.bin (it is a FinetuningArguments field): the YAML gives it."""
    torch.save(types.SimpleNamespace(learning_rate=5e-6, output_dir="x"), tmp_path / "training_args.bin")
    (tmp_path / "training_args.yaml").write_text("stage: dpo\npref_beta: 0.15\npref_loss: sigmoid\n"
                                                 "dpo_label_smoothing: 0.0\ncutoff_len: 1024\n")
    config = read_train_config(tmp_path, [])
    assert config.values == {"beta": 0.15, "loss_type": "sigmoid", "label_smoothing": 0.0, "max_length": 1024}
    assert config.source == "LLaMA-Factory training_args.yaml"


def test_llama_factory_simpo_is_reference_free(tmp_path):
    (tmp_path / "training_args.yaml").write_text("stage: dpo\npref_beta: 2.0\npref_loss: simpo\n")
    assert read_train_config(tmp_path, []).values == {"beta": 2.0, "loss_type": "simpo", "reference_free": True}


def test_swift_args_json(tmp_path):
    ckpt = tmp_path / "checkpoint-5"
    ckpt.mkdir()
    (ckpt / "args.json").write_text(json.dumps({"rlhf_type": "dpo", "beta": 0.4, "loss_type": ["sigmoid"],
                                                "rpo_alpha": None, "model": "Qwen/Qwen2.5-0.5B"}))
    config = read_train_config(tmp_path, [ckpt])
    assert config.values == {"beta": 0.4, "loss_type": "sigmoid"} and config.source == "ms-swift args.json"
    (ckpt / "args.json").write_text(json.dumps({"something": 1}))  # another tool's args.json: not read
    assert read_train_config(tmp_path, [ckpt]).values == {}


def test_hostile_yaml_is_a_warning(tmp_path):
    (tmp_path / "training_args.yaml").write_text("!!python/object/apply:os.system ['touch MARK']\n")
    config = read_train_config(tmp_path, [])
    assert config.values == {} and "not readable YAML" in config.warnings[0]
    assert not (Path.cwd() / "MARK").exists()


def test_first_source_with_a_beta_wins(tmp_path):
    torch.save(types.SimpleNamespace(beta=0.05, loss_type="sigmoid"), tmp_path / "training_args.bin")
    files = tmp_path / "wandb" / "run-1-a" / "files"
    files.mkdir(parents=True)
    (files / "config.yaml").write_text("beta:\n  value: 0.9\n")
    assert read_train_config(tmp_path, []).values["beta"] == 0.05


def test_bad_beta_values_are_dropped(tmp_path):
    torch.save({"beta": -1.0, "loss_type": "sigmoid"}, tmp_path / "training_args.bin")
    config = read_train_config(tmp_path, [])
    assert "beta" not in config.values and config.values["loss_type"] == "sigmoid"
    torch.save({"beta": True}, tmp_path / "training_args.bin")
    assert "beta" not in read_train_config(tmp_path, []).values
