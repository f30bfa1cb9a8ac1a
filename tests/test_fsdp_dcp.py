"""FSDP sharded checkpoints (torch.distributed.checkpoint folders) read without running a pickle.

accelerate's save_fsdp_model (SHARDED_STATE_DICT) calls `dcp.save({"model": state_dict}, FileSystemWriter(dir))`
where every parameter is a ShardedTensor (FSDP1) or DTensor (FSDP2) split along dim 0 over the ranks. The default
tests write exactly that layout in this process: a 1-rank gloo group whose rank holds all the shards of each
ShardedTensor (the metadata and .distcp bytes are what N ranks would write, in one file). The slow test runs real
FSDP2 on 2 gloo processes and accelerate's own save_fsdp_model.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from dpo_doctor.discover import discover
from dpo_doctor.engine import fsdp
from dpo_doctor.engine.fsdp import assemble, dcp_state_dict
from dpo_doctor.engine.loading import load_model, weights_fingerprint
from dpo_doctor.errors import UserError
from dpo_doctor.weights import FSDP_DIR, read_dcp_layout
from tests.hostile.conftest import assert_user_error, run_cli


@contextlib.contextmanager
def one_rank_group(tmp: Path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp / 'pg-store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _sharded(t: torch.Tensor, ranks: int, grid: bool = False):
    """`t` as a ShardedTensor split along dim 0 in `ranks` pieces (FSDP1's SHARDED_STATE_DICT), or on a 2x2 grid."""
    from torch.distributed._shard.sharded_tensor import Shard, ShardedTensor, ShardMetadata

    if grid:
        rows, cols = t.shape[0] // 2, t.shape[1] // 2
        boxes = [((r, c), (rows if r == 0 else t.shape[0] - rows, cols if c == 0 else t.shape[1] - cols))
                 for r in (0, rows) for c in (0, cols)]
    else:
        starts = [sum(p.shape[0] for p in torch.chunk(t, ranks)[:i]) for i in range(len(torch.chunk(t, ranks)))]
        boxes = [((s, *[0] * (t.dim() - 1)), tuple(p.shape)) for s, p in zip(starts, torch.chunk(t, ranks))]
    shards = [Shard(t[tuple(slice(o, o + s) for o, s in zip(off, size))].clone(), ShardMetadata(list(off), list(size),
                                                                                                 "rank:0/cpu"))
              for off, size in boxes]
    return ShardedTensor._init_from_local_shards(shards, list(t.shape))


def write_dcp(folder: Path, state: dict, ranks: int = 2, grid: tuple[str, ...] = ()) -> Path:
    """A pytorch_model_fsdp_0/ folder as accelerate writes it: dcp.save({"model": state}) with sharded parameters."""
    import torch.distributed.checkpoint as dcp

    folder.mkdir(parents=True, exist_ok=True)
    with one_rank_group(folder.parent):
        sd = {n: _sharded(t, ranks, n in grid) if t.dim() >= 1 and t.shape[0] >= ranks else t for n, t in state.items()}
        dcp.save({"model": sd}, storage_writer=dcp.FileSystemWriter(str(folder)))
    (folder.parent / "pg-store").unlink(missing_ok=True)
    return folder


def trained(tiny_dir: Path, seed: int = 1, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """The tiny model's weights moved as a few DPO steps would (so a checkpoint differs from the reference)."""
    gen = torch.Generator().manual_seed(seed)
    state = load_file(str(tiny_dir / "model.safetensors"))
    return {n: (t + 0.05 * torch.randn(t.shape, generator=gen)).to(dtype).contiguous() for n, t in state.items()}


def copy_model_files(src: Path, dst: Path) -> None:
    """config.json and the tokenizer (everything but the weights)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, dst / f.name)


def fsdp_run(tmp: Path, tiny_dir: Path, state: dict, config_at_root: bool = False) -> Path:
    """checkpoint-2/ holding pytorch_model_fsdp_0/ (+ config.json and tokenizer beside it, or at the run root)."""
    run = tmp / "fsdp-run"
    copy_model_files(tiny_dir, run if config_at_root else run / "checkpoint-2")
    write_dcp(run / "checkpoint-2" / FSDP_DIR, state)
    return run


# ---- reading ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ranks,dtype", [(1, torch.float32), (2, torch.float32), (3, torch.bfloat16)])
def test_read_state_dict_equals_the_original_exactly(tmp_path, tiny_dir, ranks, dtype):
    state = trained(tiny_dir, dtype=dtype)
    state["step_count"] = torch.tensor(7, dtype=torch.int64)  # a 0-dim buffer, stored whole
    grid = ("model.layers.0.self_attn.q_proj.weight",)
    folder = write_dcp(tmp_path / FSDP_DIR, state, ranks, grid)
    layout = {t.name: t for t in read_dcp_layout(folder)}
    assert len(layout["model.embed_tokens.weight"].chunks) == ranks and len(layout[grid[0]].chunks) == 4
    got = dcp_state_dict(folder)
    assert sorted(got) == sorted(state)
    for name, t in state.items():
        assert got[name].dtype == t.dtype and torch.equal(got[name], t), name


def test_assemble_refuses_chunks_that_do_not_tile(tmp_path):
    from dpo_doctor.weights import DcpChunk, DcpTensor

    t = DcpTensor("w", "float32", (4, 2), (DcpChunk((0, 0), (2, 2), "a.distcp", 0, 1), DcpChunk((2, 0), (2, 2), "a", 1, 1)))
    a, b = torch.arange(4.0).reshape(2, 2), torch.arange(4.0, 8.0).reshape(2, 2)
    assert torch.equal(assemble(t, [(t.chunks[1], b), (t.chunks[0], a)], tmp_path), torch.arange(8.0).reshape(4, 2))
    with pytest.raises(UserError, match="only 4 of 8 elements"):
        assemble(t, [(t.chunks[0], a)], tmp_path)
    with pytest.raises(UserError, match="overlapping"):
        assemble(t, [(t.chunks[0], a), (t.chunks[0], a)], tmp_path)


# ---- no pickle runs --------------------------------------------------------------------------------------------

class _Touch:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _real_metadata(folder: Path):
    with open(folder / ".metadata", "rb") as f:
        return pickle.load(f)  # the test's own file, written just above: trusted here, never by dpo-doctor


def test_metadata_pickle_that_calls_os_system_runs_nothing(tmp_path, tiny_dir):
    state = trained(tiny_dir)
    folder = write_dcp(tmp_path / FSDP_DIR, state)
    marker = tmp_path / "MARKER"
    meta = _real_metadata(folder)
    meta.storage_meta = _Touch(marker)  # a valid layout that also carries code
    raw = pickle.dumps(meta)
    pickle.loads(raw)
    assert marker.exists(), "the test pickle must really run code when unpickled"
    marker.unlink()
    (folder / ".metadata").write_bytes(raw)
    got = dcp_state_dict(folder)
    assert all(torch.equal(got[n], t) for n, t in state.items())
    assert not marker.exists()

    (folder / ".metadata").write_bytes(pickle.dumps(_Touch(marker)))  # nothing but code
    with pytest.raises(UserError, match=r"\.metadata that is not torch.distributed.checkpoint's.*FULL_STATE_DICT"):
        read_dcp_layout(folder)
    assert not marker.exists()


def test_chunk_that_is_not_a_plain_tensor_is_refused(tmp_path, tiny_dir):
    """torch.load(weights_only=True) refuses a chunk whose torch.save zip pickles a callable: nothing runs."""
    folder = write_dcp(tmp_path / FSDP_DIR, trained(tiny_dir), ranks=1)
    marker = tmp_path / "MARKER"
    name = "model.norm.weight"
    chunk = next(t for t in read_dcp_layout(folder) if t.name == name).chunks[0]
    blob = (folder / chunk.file).read_bytes()
    import io

    evil = io.BytesIO()
    torch.save(_Touch(marker), evil)
    padded = evil.getvalue()
    data = blob[:chunk.start] + padded + blob[chunk.start + chunk.length:]
    meta = _real_metadata(folder)
    for index, info in meta.storage_data.items():  # shift this item's length and every later offset
        if index.fqn == "model." + name:
            info.length = len(padded)
        elif info.offset > chunk.start:
            info.offset += len(padded) - chunk.length
    (folder / chunk.file).write_bytes(data)
    (folder / ".metadata").write_bytes(pickle.dumps(meta))
    with pytest.raises(UserError, match="weights_only"):
        dcp_state_dict(folder)
    assert not marker.exists()


# ---- discovery, conversion, cache identity --------------------------------------------------------------------

def test_discover_and_materialize(tmp_path, tiny_dir):
    state = trained(tiny_dir)
    run = fsdp_run(tmp_path, tiny_dir, state, config_at_root=True)  # the Trainer writes no config.json beside shards
    spec = discover(run, ref=tiny_dir).checkpoints[0].spec
    assert spec.kind == "fsdp" and spec.config_dir == run.resolve() and spec.base == run.resolve()
    notes = []
    full = fsdp.materialize(spec, tmp_path / "cache", note=notes.append)
    assert full.kind == "full" and full.path.parent == tmp_path / "cache" / "fsdp" and len(notes) == 1
    written = load_file(str(full.path / "model.safetensors"))
    assert set(written) == set(state) and all(torch.equal(written[n], t) for n, t in state.items())
    assert fsdp.materialize(spec, tmp_path / "cache", note=notes.append) == full and len(notes) == 1  # cached

    model = load_model(spec, "cpu", torch.float32, cache_dir=tmp_path / "cache")
    assert all(torch.equal(model.state_dict()[n], t) for n, t in state.items())



@pytest.mark.parametrize("whole_below", [64 << 20, 0])  # small shard files hashed whole; big ones sampled per item
def test_fingerprint_identity(tmp_path, tiny_dir, monkeypatch, whole_below):
    from dpo_doctor import weights

    monkeypatch.setattr(weights, "_HASH_WHOLE_BELOW", whole_below)
    state = trained(tiny_dir)
    run = fsdp_run(tmp_path, tiny_dir, state)
    fp = weights_fingerprint(discover(run, ref=tiny_dir).checkpoints[0].spec)
    shutil.copytree(run, tmp_path / "copy")
    assert weights_fingerprint(discover(tmp_path / "copy", ref=tiny_dir).checkpoints[0].spec) == fp  # path-free
    state["lm_head.weight"] = state["lm_head.weight"] + 1e-3  # one more step: another identity for the score cache
    shutil.rmtree(run / "checkpoint-2" / FSDP_DIR)
    write_dcp(run / "checkpoint-2" / FSDP_DIR, state)
    assert weights_fingerprint(discover(run, ref=tiny_dir).checkpoints[0].spec) != fp


def test_missing_config_says_how_to_fix_it(tmp_path, tiny_dir):
    run = tmp_path / "run"
    write_dcp(run / "checkpoint-2" / FSDP_DIR, trained(tiny_dir))
    with pytest.raises(UserError, match=r"checkpoint-2 skipped: an FSDP sharded checkpoint.*no config.json.*--base"):
        discover(run, ref=tiny_dir)
    spec = discover(run, ref=tiny_dir, base=tiny_dir).checkpoints[0].spec
    assert spec.kind == "fsdp" and spec.base == tiny_dir.resolve()


def test_lora_under_fsdp_loads_as_the_same_adapter(tmp_path, tiny_dir):
    """accelerate saves PEFT models adapter_only: get_peft_model_state_dict under {"model": ...}."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir),
                                LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    saved = tmp_path / "adapter"
    peft_model.save_pretrained(saved)  # the reference: the same adapter as safetensors
    run = tmp_path / "run"
    (run / "checkpoint-3").mkdir(parents=True)
    shutil.copy(saved / "adapter_config.json", run / "checkpoint-3")
    write_dcp(run / "checkpoint-3" / FSDP_DIR, {k: v.contiguous() for k, v in get_peft_model_state_dict(peft_model).items()})
    r = discover(run, base=tiny_dir)
    spec = r.checkpoints[0].spec
    assert spec.fsdp_adapter and spec.base == tiny_dir.resolve() and r.reference_source == "adapter base"
    ids = torch.tensor([[1, 5, 9, 20, 33]])
    got = load_model(spec, "cpu", torch.float32, cache_dir=tmp_path / "cache")(ids).logits
    want = peft_model.eval()(ids).logits
    assert torch.allclose(got, want, atol=1e-6)


# ---- through the console script -----------------------------------------------------------------------------

def _scan(run: Path, tiny_dir: Path, pairs: Path, out: Path, cache: Path):
    return run_cli("scan", run, "--ref", tiny_dir, "--data", pairs, "--no-generate", "--out", out,
                   "--cache-dir", cache, env={"DPO_DOCTOR_CACHE": str(cache)}, timeout=300)


def _pairs(report_dir: Path):
    import polars as pl

    from dpo_doctor.report import load_report

    return load_report(report_dir).pairs.filter(pl.col("checkpoint") == "checkpoint-2").sort("pair_id")


def test_scan_of_an_fsdp_run_matches_the_safetensors_run(tmp_path, tiny_dir, pairs_jsonl):
    state = trained(tiny_dir)
    plain = tmp_path / "plain-run"
    copy_model_files(tiny_dir, plain / "checkpoint-2")
    save_file(state, str(plain / "checkpoint-2" / "model.safetensors"), metadata={"format": "pt"})
    run = fsdp_run(tmp_path, tiny_dir, state)

    got = _scan(run, tiny_dir, pairs_jsonl, tmp_path / "out", tmp_path / "cache")
    assert got.returncode == 0, got.stderr[-3000:]
    assert "converting an FSDP sharded checkpoint" in got.stderr and "skipped" not in got.stderr
    want = _scan(plain, tiny_dir, pairs_jsonl, tmp_path / "out-plain", tmp_path / "cache-plain")
    assert want.returncode == 0, want.stderr[-3000:]
    a, b = _pairs(tmp_path / "out"), _pairs(tmp_path / "out-plain")
    assert len(a) == len(b) == 12
    assert (a["margin"] - b["margin"]).abs().max() < 1e-6
    assert a.select("pair_id", "logp_chosen", "logp_rejected").equals(b.select("pair_id", "logp_chosen", "logp_rejected"))


def test_truncated_distcp_is_a_one_line_error(tmp_path, tiny_dir, pairs_jsonl):
    run = fsdp_run(tmp_path, tiny_dir, trained(tiny_dir))
    shard = sorted((run / "checkpoint-2" / FSDP_DIR).glob("*.distcp"))[-1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    proc = _scan(run, tiny_dir, pairs_jsonl, tmp_path / "out", tmp_path / "cache")
    assert_user_error(proc, "truncated", shard.name, "re-copy the whole folder")


# ---- real FSDP2 on two processes, saved by accelerate ---------------------------------------------------------

def _fsdp2_save(rank: int, world: int, port: int, src: str, out: str) -> None:
    import logging

    import accelerate.utils.fsdp_utils as fsdp_utils
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.fsdp.fully_sharded_data_parallel import StateDictType
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    fsdp_utils.logger = logging.getLogger("fsdp-test")  # accelerate's logger wants an Accelerator state
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    plugin = SimpleNamespace(fsdp_version=2, state_dict_type=StateDictType.SHARDED_STATE_DICT,
                             state_dict_config=SimpleNamespace())
    fsdp_utils.save_fsdp_model(plugin, SimpleNamespace(process_index=rank, num_processes=world), model, out,
                               adapter_only=True)  # what the HF Trainer passes
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("DPO_DOCTOR_SLOW") != "1", reason="slow (2 spawned FSDP2 ranks): set DPO_DOCTOR_SLOW=1")
def test_real_fsdp2_two_ranks_saved_by_accelerate(tmp_path, tiny_dir):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_fsdp2_save, args=(2, port, str(tiny_dir), str(tmp_path)), nprocs=2)
    folder = tmp_path / FSDP_DIR
    assert sorted(p.name for p in folder.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert max(len(t.chunks) for t in read_dcp_layout(folder)) == 2
    got, want = dcp_state_dict(folder), load_file(str(tiny_dir / "model.safetensors"))
    assert sorted(got) == sorted(want) and all(torch.equal(got[n], t) for n, t in want.items())
