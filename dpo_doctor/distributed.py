"""Many devices through torch.distributed (launched by `torchrun` or `accelerate launch`).

Pairs are sharded round-robin across ranks (pair i goes to rank i % world), every rank scores its shard of the
entries still missing, and the shards are summed into every rank with one all_reduce (gloo on CPU, NCCL on
CUDA). Only rank 0 writes caches and the report, so the report is the single-process one (to float tolerance).
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
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local)


def shard_mask(n: int, d: Dist) -> np.ndarray:
    """True for the pairs this rank scores."""
    return (np.arange(n) % d.world) == d.rank


def merge(arrays: dict[str, np.ndarray], mine: np.ndarray, d: Dist) -> dict[str, np.ndarray]:
    """Sum each array over ranks, each rank contributing only its own entries (others zeroed)."""
    if not d.active:
        return arrays
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", d.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    out = {}
    for name, arr in arrays.items():
        t = torch.from_numpy(np.where(mine, np.nan_to_num(arr.astype(np.float64)), 0.0)).to(device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        out[name] = t.cpu().numpy().astype(arr.dtype)
    return out


def barrier(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist

        dist.barrier()
