"""DeepSpeed ZeRO checkpoints: consolidated exactly, read only with weights_only=True under --trust-pickles, cached.

The folders are written here the way DeepSpeed 0.19 writes them (the inverse of zero_to_fp32.py): the same file
names, the same keys, and the same pickled DeepSpeed globals (ZeroStageEnum, LossScaler, fragment_address), from
stand-in classes registered under DeepSpeed's module names only while torch.save runs. The consolidation was also
checked against real DeepSpeed 0.19.8 checkpoints (ZeRO-2/3, fp32/bf16, 2 CPU ranks): bit-identical to
zero_to_fp32.py's output.
"""

from __future__ import annotations

import contextlib
import enum
import math
import shutil
import sys
import types
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dpo_doctor.discover import discover
from dpo_doctor.engine import zero
from dpo_doctor.errors import UserError
from tests.hostile.conftest import assert_user_error, run_cli

DS_VERSION = "0.19.8"


# ---- DeepSpeed's pickled classes, under their real names while saving ------------------------------------------

class ZeroStageEnum(int, enum.Enum):
    disabled = 0
    optimizer_states = 1
    gradients = 2
    weights = 3


class LossScaler:
    def __init__(self, scale=1.0):
        self.cur_scale, self.dynamic = scale, False


@dataclass
class fragment_address:  # noqa: N801 (DeepSpeed's name)
    numel: int
    start: int


_FAKES = {"deepspeed.runtime.zero.config": ZeroStageEnum, "deepspeed.runtime.fp16.loss_scaler": LossScaler,
          "deepspeed.utils.tensor_fragment": fragment_address}


@contextlib.contextmanager
def deepspeed_names():
    """torch.save pickles these classes as `deepspeed.<module>.<name>`, exactly as DeepSpeed's own files do."""
    saved = {}
    for mod_name, cls in _FAKES.items():
        parts = mod_name.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            saved.setdefault(name, sys.modules.get(name))
            sys.modules[name] = sys.modules.get(name) if saved[name] is not None else types.ModuleType(name)
        setattr(sys.modules[mod_name], cls.__name__, cls)
        cls.__module__ = mod_name
    try:
        yield
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


# ---- writing a ZeRO folder ----------------------------------------------------------------------------------

def _model_states(module: dict, shapes: OrderedDict, stage: int, world: int, step: int) -> dict:
    return {"module": module, "buffer_names": [], "optimizer": None, "param_shapes": [shapes],
            "frozen_param_shapes": OrderedDict(), "shared_params": {}, "frozen_param_fragments": OrderedDict(),
            "lr_scheduler": {"base_lrs": [1e-6], "last_epoch": step}, "data_sampler": None, "random_ltd": None,
            "skipped_steps": 0, "global_steps": step, "global_samples": step * 8, "dp_world_size": world,
            "mp_world_size": 1, "checkpoint_parallel_dimensions": {"pp_degree": 1, "tp_degree": 1},
            "ds_config": {"zero_optimization": {"stage": stage}, "bf16": {"enabled": True}},
            "ds_version": DS_VERSION, "consumed_samples": step * 8}


def _optim(part: torch.Tensor, stage: int, world: int, extra: dict) -> dict:
    adam = {"state": {0: {"step": torch.tensor(2.0), "exp_avg": torch.zeros_like(part),
                          "exp_avg_sq": torch.zeros_like(part)}}, "param_groups": [{"lr": 1e-6, "params": [0]}]}
    opt = {"loss_scaler": LossScaler(), "dynamic_loss_scale": False, "overflow": False,
           "zero_stage": ZeroStageEnum(stage), **extra}
    if stage == 3:
        opt.update(partition_count=world, optimizer_state_dict=adam, fp32_flat_groups=[part])
    else:
        opt.update(clip_grad=1.0, base_optimizer_state=adam, single_partition_of_fp32_groups=[part],
                   partition_count=[world], ds_version=DS_VERSION)
    return {"optimizer_state_dict": opt, "ds_config": {"zero_optimization": {"stage": stage}}, "ds_version": DS_VERSION}


def write_zero(save_dir: Path, state: dict[str, torch.Tensor], stage: int, world: int, step: int,
               bf16: bool = True) -> Path:
    """save_dir/global_step{step}/ + `latest` + a zero_to_fp32.py that must never run, as DeepSpeed leaves them."""
    tag = save_dir / f"global_step{step}"
    tag.mkdir(parents=True)
    (save_dir / "latest").write_text(tag.name)
    (save_dir / "zero_to_fp32.py").write_text("raise SystemExit('dpo-doctor must never execute this script')\n")
    shapes = OrderedDict((n, t.shape) for n, t in state.items())
    prefix = "bf16_" if bf16 else ""
    with deepspeed_names():
        if stage == 3:
            pieces = [[] for _ in range(world)]
            for t in state.values():  # each parameter: ceil(numel / world) values per rank, the last zero-padded
                per = math.ceil(t.numel() / world)
                flat = torch.cat([t.reshape(-1).float(), torch.zeros(per * world - t.numel())])
                for r in range(world):
                    pieces[r].append(flat[r * per:(r + 1) * per])
            for r in range(world):
                module = OrderedDict((n, torch.empty(0)) for n in state)  # ZeRO-3 placeholders
                torch.save(_model_states(module, shapes, 3, world, step),
                           tag / f"zero_pp_rank_{r}_mp_rank_00_model_states.pt")
                torch.save(_optim(torch.cat(pieces[r]), 3, world, {}),
                           tag / f"{prefix}zero_pp_rank_{r}_mp_rank_00_optim_states.pt")
        else:  # one flat group, padded to a multiple of 2 x world, split evenly; the padding is dropped on save
            flat = torch.cat([t.reshape(-1).float() for t in state.values()])
            align = 2 * world
            padded = torch.cat([flat, torch.zeros(math.ceil(flat.numel() / align) * align - flat.numel())])
            size = padded.numel() // world
            torch.save(_model_states(OrderedDict((n, t.to(torch.bfloat16)) for n, t in state.items()), shapes, stage,
                                     world, step), tag / "mp_rank_00_model_states.pt")
            for r in range(world):
                part = padded[r * size:(r + 1) * size]
                pad = padded.numel() - flat.numel() if r == world - 1 else 0
                part = part[:part.numel() - pad]
                mapping = OrderedDict((n, fragment_address(numel=t.numel(), start=0)) for n, t in state.items())
                torch.save(_optim(part, stage, world, {"group_paddings": [pad], "param_slice_mappings": [mapping]}),
                           tag / f"{prefix}zero_pp_rank_{r}_mp_rank_00_optim_states.pt")
    return tag


def trained(tiny_dir: Path, seed: int = 1) -> dict[str, torch.Tensor]:
    """The tiny model's weights, moved as a few DPO steps would (so a checkpoint differs from the reference)."""
    gen = torch.Generator().manual_seed(seed)
    state = load_file(str(tiny_dir / "model.safetensors"))
    return {n: (t + 0.05 * torch.randn(t.shape, generator=gen)).contiguous() for n, t in state.items()}


def copy_model_files(src: Path, dst: Path) -> None:
    """config.json and the tokenizer, as the HF Trainer and OpenRLHF save them beside the weights."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, dst / f.name)


def hf_zero_run(tmp: Path, tiny_dir: Path, state: dict, stage: int, world: int) -> Path:
    """HF Trainer with ZeRO-3 and no gathered weights: checkpoint-2/ has config.json, latest, global_step2/ only."""
    run = tmp / f"zero{stage}-run"
    copy_model_files(tiny_dir, run / "checkpoint-2")
    write_zero(run / "checkpoint-2", state, stage, world, 2)
    return run


def safetensors_run(tmp: Path, tiny_dir: Path, state: dict) -> Path:
    run = tmp / "plain-run"
    copy_model_files(tiny_dir, run / "checkpoint-2")
    save_file(state, str(run / "checkpoint-2" / "model.safetensors"), metadata={"format": "pt"})
    return run


# ---- consolidation ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage,world", [(2, 2), (2, 3), (3, 2), (3, 3), (1, 2)])
def test_consolidated_weights_equal_the_original_exactly(tmp_path, tiny_dir, stage, world):
    state = trained(tiny_dir)
    tag = write_zero(tmp_path / "ckpt", state, stage, world, 4)
    got = zero.state_dict(tag)
    assert list(got) == list(state)
    for name, t in state.items():
        assert torch.equal(got[name], t), name


@pytest.mark.parametrize("stage", [2, 3])
def test_materialize_writes_safetensors_once_into_the_cache(tmp_path, tiny_dir, stage):
    state = trained(tiny_dir)
    copy_model_files(tiny_dir, tmp_path / "run")
    write_zero(tmp_path / "run" / "ckpt", state, stage, 2, 6)
    spec = discover(tmp_path / "run", trust_pickles=True).checkpoints[0].spec
    assert spec.kind == "zero" and spec.base == (tmp_path / "run").resolve()
    notes, ticks = [], []
    full = zero.materialize(spec, tmp_path / "cache", progress=lambda s, d, t: ticks.append((d, t)),
                            note=notes.append)
    assert full.kind == "full" and full.path.parent == tmp_path / "cache" / "zero"
    assert len(notes) == 1 and f"ZeRO-{stage}" in notes[0] and "KB" in notes[0] and str(full.path) in notes[0]
    assert ticks[-1] == (len(state), len(state))
    written = load_file(str(full.path / "model.safetensors"))
    assert all(torch.equal(written[n], t) for n, t in state.items()) and set(written) == set(state)
    assert (full.path / "config.json").read_bytes() == (tiny_dir / "config.json").read_bytes()
    mtime = (full.path / "model.safetensors").stat().st_mtime_ns
    again = zero.materialize(spec, tmp_path / "cache", note=notes.append)
    assert again == full and len(notes) == 1 and (full.path / "model.safetensors").stat().st_mtime_ns == mtime


def test_weights_only_refuses_a_global_outside_the_allow_list(tmp_path, tiny_dir):
    tag = write_zero(tmp_path / "ckpt", trained(tiny_dir), 2, 2, 2)
    evil = type("Evil", (), {"__module__": "deepspeed.utils.tensor_fragment"})  # not on the allow-list
    with deepspeed_names():
        sys.modules["deepspeed.utils.tensor_fragment"].Evil = evil
        torch.save({"optimizer_state_dict": {"x": evil()}}, tag / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")
    with pytest.raises(UserError, match="deepspeed.utils.tensor_fragment.Evil, which is not on.*allow-list"):
        zero.state_dict(tag)


def test_missing_config_asks_for_the_hf_model_dir(tmp_path, tiny_dir):
    write_zero(tmp_path / "run" / "ckpt", trained(tiny_dir), 2, 2, 2)
    with pytest.raises(UserError, match="no config.json.*--base"):
        discover(tmp_path / "run", trust_pickles=True)
    spec = discover(tmp_path / "run", base=tiny_dir, trust_pickles=True).checkpoints[0].spec
    assert spec.base == tiny_dir.resolve()


# ---- through the console script -----------------------------------------------------------------------------

def _scan(run: Path, tiny_dir: Path, pairs: Path, out: Path, cache: Path, *extra):
    return run_cli("scan", run, "--ref", tiny_dir, "--data", pairs, "--no-generate", "--out", out,
                   "--cache-dir", cache, *extra, env={"DPO_DOCTOR_CACHE": str(cache)}, timeout=300)


def _logps(report_dir: Path):
    import polars as pl

    from dpo_doctor.report import load_report

    pairs = load_report(report_dir).pairs
    return pairs.filter(pl.col("checkpoint") == "checkpoint-2").sort("pair_id").select(
        "pair_id", "logp_chosen", "logp_rejected")


@pytest.mark.parametrize("stage", [2, 3])
def test_scan_of_a_zero_run_matches_the_safetensors_run(tmp_path, tiny_dir, pairs_jsonl, stage):
    """Same per-pair log-probs as the safetensors checkpoint; refused without the flag; converted once (ZeRO-2 run
    checks the last two, to keep the console-script runs few)."""
    state = trained(tiny_dir)
    plain = safetensors_run(tmp_path, tiny_dir, state)
    run = hf_zero_run(tmp_path, tiny_dir, state, stage, 2)
    cache = tmp_path / "cache"

    first = _scan(run, tiny_dir, pairs_jsonl, tmp_path / "out1", cache, "--trust-pickles")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "converting" in first.stderr and f"ZeRO-{stage}" in first.stderr and "KB to" in first.stderr
    reference = _scan(plain, tiny_dir, pairs_jsonl, tmp_path / "out-plain", tmp_path / "cache-plain")
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert _logps(tmp_path / "out1").equals(_logps(tmp_path / "out-plain"))
    if stage == 3:
        return

    refused = _scan(run, tiny_dir, pairs_jsonl, tmp_path / "out0", tmp_path / "cache0")
    assert_user_error(refused, "--trust-pickles", "ZeRO")
    converted = list((cache / "zero").iterdir())
    assert len(converted) == 1
    mtime = (converted[0] / "model.safetensors").stat().st_mtime_ns
    shutil.rmtree(cache / "scores")  # force rescoring: the model is loaded again, from the converted folder
    second = _scan(run, tiny_dir, pairs_jsonl, tmp_path / "out2", cache, "--trust-pickles")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "converting" not in second.stderr
    assert (converted[0] / "model.safetensors").stat().st_mtime_ns == mtime
    assert _logps(tmp_path / "out2").equals(_logps(tmp_path / "out1"))
