"""Running under torchrun: which rank this process is, the process group, and the few collective
steps ssd needs (gather, broadcast, barrier).

Without torchrun (no WORLD_SIZE in the environment, or 1) everything here is a no-op: one process,
rank 0, and the commands behave exactly as they always did. Under torchrun each process is one
rank; CUDA ranks use the GPU of their local rank and the NCCL backend, CPU ranks use gloo and share
the machine's cores between the ranks of a node. No scheduler of our own: Slurm and the clusters'
launchers start torchrun, and torchrun starts us.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def active(self) -> bool:
        """More than one process: collectives are needed."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every output and prints the tables."""
        return self.rank == 0

    def share(self, n: int) -> range:
        """This rank's contiguous share of n items in order (shares differ by at most one item), so
        concatenating the shares in rank order gives the items back in their order."""
        start = self.rank * n // self.world_size
        return range(start, (self.rank + 1) * n // self.world_size)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def ranks() -> Ranks:
    """This process's place, from the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, ...)."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Ranks()
    return Ranks(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0), _env_int("LOCAL_WORLD_SIZE", world))


_threads_given = {"value": False}


def keep_threads() -> None:
    """The user chose the thread count (ssd --threads): setup must not split the cores itself."""
    _threads_given["value"] = True


def setup(use_cuda: bool) -> Ranks:
    """Join the process group when started by torchrun (once per process). On the CPU, the cores of
    a node are split between its ranks unless --threads said otherwise."""
    r = ranks()
    if not r.active or (dist.is_available() and dist.is_initialized()):
        return r
    if use_cuda:
        torch.cuda.set_device(r.local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    if not use_cuda and not _threads_given["value"]:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // r.local_world_size))
    return r


def rank_device(requested: torch.device) -> torch.device:
    """Under torchrun, a CUDA device means the GPU of this process's local rank."""
    r = ranks()
    if requested.type == "cuda" and r.active and requested.index is None:
        return torch.device("cuda", r.local_rank)
    return requested


def gather(obj: T) -> list[T]:
    """Every rank's obj, in rank order, on every rank (one process: [obj])."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: T) -> T:
    """Rank 0's obj on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
