"""phi in inference mode, and the center c placed from it: what training, patches and scoring share.

Kept apart from the training loop so that the views (core/views.py) and patch geometry
(core/patches.py) can use them while the loop (core/training.py) uses the views.
"""

from __future__ import annotations

import torch

from ssd_cli.core.ranks import ranks
from ssd_cli.core import distributed
from ssd_cli.core.nets import Encoder
from ssd_cli.errors import InputError, TrainingDiverged


def eval_batch_size(device: torch.device) -> int:
    """Inference chunk size: small on a CPU, where activations then stay in cache (measured 1.6x
    faster than 1024 on the CIFAR-10 net); large on a GPU, which wants big kernels."""
    return 128 if device.type == "cpu" else 4096


@torch.inference_mode()
def embed(encoder: Encoder, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """phi(x) in eval mode (batch norm uses its running statistics)."""
    was_training = encoder.training
    encoder.eval()
    out = torch.cat([encoder(chunk) for chunk in x.split(batch_size or eval_batch_size(x.device))]) if len(x) else torch.zeros((0, encoder.spec.rep_dim), device=x.device)
    encoder.train(was_training)
    return out


class CenterError(InputError):
    """No sample to place c, or c all zero (constant input): training from it would be meaningless."""


def embed_shared(encoder: Encoder, x: torch.Tensor) -> torch.Tensor:
    """embed(), with the work split over the ranks when training together (results gathered in order)."""
    if not distributed.training_together():
        return embed(encoder, x)
    return distributed.gather_tensor(embed(encoder, ranks().mine(x)))


def init_center(encoder: Encoder, x: torch.Tensor, y: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """c = mean of phi over unlabeled and labeled-normal data (never labeled anomalies), kept away from 0.

    A coordinate of c near 0 could be matched trivially by zero weights, so |c_k| < eps becomes +-eps.
    """
    keep = y >= 0
    if not bool(keep.any()):
        raise CenterError("no unlabeled or labeled-normal samples to place the center c")
    if distributed.training_together():  # each rank embeds its share; sums and counts are all-reduced
        mine = embed(encoder, ranks().mine(x[keep]))
        sums = distributed.all_sum(torch.cat([mine.sum(dim=0), mine.new_tensor([len(mine)])]))
        c = sums[:-1] / sums[-1]
    else:
        c = embed(encoder, x[keep]).mean(dim=0)
    if not bool(torch.isfinite(c).all()):  # inputs are bounded: only weights blown up by the pretraining get here
        raise TrainingDiverged(
            "training diverged: phi's output overflowed, so the center c is not finite; nothing was written. "
            "The autoencoder's weights blew up in pretraining: try a lower --pretrain-lr"
        )
    if not bool((c != 0).any()):
        raise CenterError("the center c is all zero: the network maps every input to 0 (dead network)")
    small = c.abs() < eps
    return torch.where(small, torch.where(c < 0, -eps, eps), c).clone()


