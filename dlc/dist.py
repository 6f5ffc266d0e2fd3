"""Distributed helpers for `torchrun` (DDP). A single process without torchrun is world size 1.

Training: `setup()` then wrap the model with `wrap_ddp(model)`; each rank reads its shard of the
data through `shard_indices`. Sampling: each rank produces the global sample indices
`rank_indices(n, ...)` and seeds every sample from its global index (`dlc.common.PerSampleRNG`),
so the samples do not depend on the number of processes; `gather_indexed` reassembles them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from .common import resolve_device, seed_for


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun; otherwise a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dev = resolve_device(device)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def cleanup() -> None:
    """Leave the process group. All ranks meet at a barrier first: a rank that tears gloo down while
    another is still inside a collective (or about to enter one) aborts the whole job."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    if info.world_size == 1:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def rank_indices(n: int, rank: int = 0, world_size: int = 1) -> range:
    """Global indices [0, n) owned by `rank`: a strided split, so any world size covers all of them."""
    return range(rank, n, world_size)


def shard_indices(n: int, info: DistInfo, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of a dataset of size n for this rank (optionally shuffled identically on every rank)."""
    perm = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return perm[info.rank::info.world_size]


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= dist.get_world_size()
    return x


def gather_indexed(local: torch.Tensor, local_idx: torch.Tensor, n: int) -> torch.Tensor:
    """Reassemble per-rank results (rows of `local` belong to global indices `local_idx`) into
    one tensor of n rows ordered by global index, on every rank."""
    if not dist.is_initialized():
        out = torch.empty((n, *local.shape[1:]), dtype=local.dtype, device=local.device)
        out[local_idx.to(local.device)] = local
        return out
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=local.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], device=local.device))
    m = int(max(s.item() for s in sizes))
    pad = torch.zeros((m, *local.shape[1:]), dtype=local.dtype, device=local.device)
    pad[: local.shape[0]] = local
    pidx = torch.full((m,), -1, dtype=torch.long, device=local.device)
    pidx[: local.shape[0]] = local_idx.to(local.device)
    all_x = [torch.empty_like(pad) for _ in range(world)]
    all_i = [torch.empty_like(pidx) for _ in range(world)]
    dist.all_gather(all_x, pad)
    dist.all_gather(all_i, pidx)
    out = torch.empty((n, *local.shape[1:]), dtype=local.dtype, device=local.device)
    for xs, ids in zip(all_x, all_i):
        keep = ids >= 0
        out[ids[keep]] = xs[keep]
    return out


def index_stream(n: int, local_batch: int, info: DistInfo, seed: int) -> Iterator[torch.Tensor]:
    """Endless local batches of dataset indices: epoch e is one permutation of [0, n) shared by all
    ranks (seeded from (seed, e)), strided by rank, so the union over ranks is one global batch."""
    epoch, buf = 0, torch.empty(0, dtype=torch.long)
    while True:
        while len(buf) < local_batch:
            g = torch.Generator().manual_seed(seed_for(seed, epoch, stream=1))
            buf = torch.cat([buf, torch.randperm(n, generator=g)[info.rank::info.world_size]])
            epoch += 1
        yield buf[:local_batch]
        buf = buf[local_batch:]
