"""Many devices through torch.distributed (launched by `torchrun` or `accelerate launch`).

Pairs are sharded round-robin across ranks (pair i goes to rank i % world), every rank scores its shard of the
entries still missing, and the shards are summed into every rank with one all_reduce (gloo on CPU, NCCL on
CUDA). Generation probes shard the prompts the same way; each rank's samples table travels as Arrow IPC bytes in
a uint8 tensor (`gather_bytes`: no pickling, unlike all_gather_object). Only rank 0 writes caches and the report, so the report is the single-process one (to float tolerance).

Cache checks agree across ranks (`share_hit`): ranks on different machines may see different `--cache-dir`
contents, so a cache entry any rank finds is sent to every rank, and the ranks rescore only when none finds it.
Every rank therefore takes the same branch, and none waits in a collective that another skipped.
Without WORLD_SIZE > 1 in the environment, everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init() -> Dist:
    """Join the process group if launched by torchrun/accelerate (WORLD_SIZE > 1); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        # the group is ours (not a trainer's): shut it down at exit, or gloo's threads can abort the process while
        # the interpreter tears down ("terminate called without an active exception", seen once under load)
        import atexit

        atexit.register(_shutdown)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local)


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def shard_mask(n: int, d: Dist) -> np.ndarray:
    """True for the pairs this rank scores."""
    return (np.arange(n) % d.world) == d.rank


def merge(arrays: dict[str, np.ndarray], mine: np.ndarray, d: Dist) -> dict[str, np.ndarray]:
    """Sum each array over ranks, each rank contributing only its own entries (others zeroed)."""
    if not d.active:
        return arrays
    import torch
    import torch.distributed as dist

    device = _device(d)
    out = {}
    for name, arr in arrays.items():
        t = torch.from_numpy(np.where(mine, np.nan_to_num(arr.astype(np.float64)), 0.0)).to(device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        out[name] = t.cpu().numpy().astype(arr.dtype)
    return out


def _device(d: Dist):
    import torch
    import torch.distributed as dist

    return torch.device("cuda", d.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")


def owned(n: int, d: Dist) -> list[int]:
    """The indices of n items (prompts, batches) this rank handles: i % world == rank."""
    return [i for i in range(n) if i % d.world == d.rank]


def all_true(flag: bool, d: Dist) -> bool:
    """True when `flag` holds on every rank (so ranks take the same branch and no collective is left waiting)."""
    if not d.active:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(flag)], device=_device(d))
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def all_sum(values: list[float], d: Dist) -> list[float]:
    """Element-wise sum over ranks, in float64."""
    if not d.active:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=_device(d))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def gather_bytes(data: bytes, d: Dist) -> list[bytes]:
    """Every rank's `data`, in rank order, on every rank."""
    if not d.active:
        return [data]
    import torch
    import torch.distributed as dist

    dev = _device(d)
    size = torch.tensor([len(data)], dtype=torch.long, device=dev)
    sizes = [torch.zeros_like(size) for _ in range(d.world)]
    dist.all_gather(sizes, size)
    longest = max(int(s.item()) for s in sizes)
    buf = torch.zeros(longest, dtype=torch.uint8, device=dev)
    if data:
        buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(dev)
    parts = [torch.zeros_like(buf) for _ in range(d.world)]
    dist.all_gather(parts, buf)
    return [bytes(p[: int(s.item())].cpu().numpy().tobytes()) for p, s in zip(parts, sizes)]


def share_hit(payload: bytes | None, d: Dist) -> bytes | None:
    """One agreement on a cache lookup: this rank's entry (bytes) or None -> the entry of the lowest rank that has
    one, on every rank (None on every rank when no rank has one). One small all_gather when the ranks agree; two
    broadcasts more (size, then the entry) when some ranks hit and others missed."""
    if not d.active:
        return payload
    import torch
    import torch.distributed as dist

    dev = _device(d)
    flags = [torch.zeros(1, dtype=torch.long, device=dev) for _ in range(d.world)]
    dist.all_gather(flags, torch.tensor([int(payload is not None)], dtype=torch.long, device=dev))
    hits = [r for r, f in enumerate(flags) if int(f.item())]
    if len(hits) in (0, d.world):
        return payload
    src = hits[0]
    size = torch.tensor([len(payload) if d.rank == src else 0], dtype=torch.long, device=dev)
    dist.broadcast(size, src=src)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=dev)
    if d.rank == src and payload:
        buf[:] = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(dev)
    dist.broadcast(buf, src=src)
    return bytes(buf.cpu().numpy().tobytes())


def barrier(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist

        dist.barrier()
