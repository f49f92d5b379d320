"""How long training will take here: a few timed steps of the real network on random data.

Cheap enough to run before every plan (well under a second for the paper's networks, a few seconds
for 128-px networks on a CPU), and honest about this machine, its threads and its device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from ssd_cli.core.config import PAPER_TRAIN, TrainConfig
from ssd_cli.core.nets import AutoEncoder, LeNetSpec
from ssd_cli.core.training import pretrain_autoencoder, seeded_init, train_deep_svdd


@dataclass(frozen=True)
class StepCost:
    """Seconds per training image and epoch, for phi (Deep SVDD) and for the autoencoder."""

    encoder: float
    autoencoder: float


def step_cost(spec: LeNetSpec, device: torch.device, batch_size: int, steps: int = 2) -> StepCost:
    """Time `steps` mini-batches of each phase after one warm-up batch (first calls pay for set-up)."""
    from ssd_cli.core.pipeline import initial_encoder

    batch = max(2, min(batch_size, 64))
    x = torch.rand((steps + 1) * batch, spec.channels, spec.image_size, spec.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.zeros(len(x), dtype=torch.int8, device=device)
    one_epoch = replace(PAPER_TRAIN, epochs=1, batch_size=batch)

    def timed(run) -> float:
        run(x[:batch])  # warm-up
        _sync(device)
        start = time.perf_counter()
        run(x[batch:])
        _sync(device)
        return (time.perf_counter() - start) / (len(x) - batch)

    encoder = timed(lambda data: train_deep_svdd(initial_encoder(spec, None, 0, device), data, y[: len(data)], TrainConfig(optim=one_epoch), seed=0))
    ae = seeded_init(lambda: AutoEncoder(spec), 0).to(device)
    autoencoder = timed(lambda data: pretrain_autoencoder(ae, data, one_epoch, seed=0))
    return StepCost(encoder, autoencoder)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_seconds(cost: StepCost, n_train: int, n_pretrain: int, epochs: int, pretrain_epochs: int) -> float:
    """Estimated seconds of pretraining plus training (decoding the images comes on top)."""
    return cost.encoder * n_train * epochs + cost.autoencoder * n_pretrain * pretrain_epochs
