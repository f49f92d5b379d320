"""Running under torchrun: which rank this process is, the process group, and the few collective
steps ssd needs (gather, broadcast, barrier).

Without torchrun (no WORLD_SIZE in the environment, or 1) everything here is a no-op: one process,
rank 0, and the commands behave exactly as they always did. Under torchrun each process is one
rank; CUDA ranks use the GPU of their local rank and the NCCL backend, CPU ranks use gloo and share
the machine's cores between the ranks of a node. No scheduler of our own: Slurm and the clusters'
launchers start torchrun, and torchrun starts us.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ssd_cli.core.ranks import Ranks, ranks

T = TypeVar("T")


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
    atexit.register(_close)  # a process group left open can abort the process as it exits
    if not use_cuda and not _threads_given["value"]:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // r.local_world_size))
    return r


def _close() -> None:
    """At exit: wait until every rank is done with the group, then close it. A rank that leaves
    while a peer is still reading its last message makes the peer abort (SIGABRT in gloo)."""
    if not dist.is_initialized():
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=60))  # a rank that failed is not waited for forever
        else:
            dist.barrier()
    except Exception:  # a failed peer: nothing left to wait for
        pass
    dist.destroy_process_group()


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


# --- data-parallel training ---------------------------------------------------------------------
# Only `ssd train` / `ssd pretrain` under torchrun train one model together; a distributed benchmark
# trains different runs on each rank, so the synchronisation below is switched on explicitly.

_data_parallel = {"on": False}


@contextmanager
def data_parallel() -> Iterator[Ranks]:
    """Within this block, training loops and batch norm synchronise across ranks (when there are
    several): each rank computes its share of every mini-batch."""
    r = ranks()
    before = _data_parallel["on"]
    _data_parallel["on"] = r.active and dist.is_available() and dist.is_initialized()
    try:
        yield r
    finally:
        _data_parallel["on"] = before


def training_together() -> bool:
    return _data_parallel["on"]


def sum_gradients(params: list[torch.Tensor]) -> None:
    """Sum every parameter's gradient over the ranks, in one all-reduce (a missing gradient counts
    as zero, so every rank sends the same layout)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def all_sum(t: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    dist.all_reduce(out)
    return out


def gather_tensor(t: torch.Tensor) -> torch.Tensor:
    """The ranks' tensors (any first dimension) concatenated in rank order, on every rank."""
    parts = gather(t.detach().cpu())
    return torch.cat(parts).to(t.device)


class _SumOverRanks(torch.autograd.Function):
    """all_sum with a gradient: every rank's loss depends on every rank's share of the sum, so the
    backward sums the incoming gradients over the ranks too. (torch.distributed.nn.functional's
    all_reduce does the same, and prints a FutureWarning on every rank.)"""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return all_sum(t)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return all_sum(grad)


def synced_batch_norm(bn: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Training-mode batch norm over the global mini-batch, the union of every rank's share: what
    one process that saw the whole batch computes. The all-reduces are differentiable (their
    backward sums the gradients of every rank's loss), and the running statistics are updated as
    _BatchNorm does, with the unbiased variance. PyTorch's SyncBatchNorm runs on GPUs only."""
    all_reduce = _SumOverRanks.apply
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    count = torch.full((1,), x.numel() / x.shape[1], dtype=x.dtype, device=x.device)
    total = all_reduce(torch.cat([x.sum(dims), count]))
    n = total[-1]
    mean = total[:-1] / n
    centred = x - mean.view(shape)
    var = all_reduce((centred * centred).sum(dims)) / n
    if bn.training and bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            bn.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
    y = centred / torch.sqrt(var + bn.eps).view(shape)
    return y * bn.weight.view(shape) + bn.bias.view(shape) if bn.affine else y
