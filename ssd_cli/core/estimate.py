"""How long training will take here: a few timed steps of the real network on random data.

Cheap enough to run before every plan (one to two seconds for the paper's networks, a few seconds
for 128-px networks on a CPU), and honest about this machine, its threads and its device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from ssd_cli.core.config import PAPER_TRAIN, TrainConfig
from ssd_cli.core.nets import AutoEncoder, LeNetSpec
from ssd_cli.core.training import EpochCallback, pretrain_autoencoder, seeded_init, train_deep_svdd


@dataclass(frozen=True)
class StepCost:
    """Seconds per training image and epoch, for phi (Deep SVDD) and for the autoencoder."""

    encoder: float
    autoencoder: float


def step_cost(spec: LeNetSpec, device: torch.device, batch_size: int, steps: int = 1) -> StepCost:
    """Time epochs of `steps` mini-batches in each phase, after a first one that pays for set-up:
    building the network, finding c and making the optimiser happen once per run, not per step
    (timing them with the steps made phi's cost 1.5-1.7x too high on a CPU). The faster of two timed
    epochs counts: on a machine shared with other work one step can take twice as long.

    The paper's small inputs (32 px and less) and any input on a GPU are timed at the batch training
    uses: the cost per image depends on it (on a CPU, 1.4x from 64 to 200 images measured for
    fashion-mnist, whose activations then outgrow the cache; on a GPU a step costs about the same at
    any small batch). Larger inputs on a CPU are timed on 64 images, to stay cheap before every plan.
    """
    from ssd_cli.core.pipeline import initial_encoder

    small = spec.image_size <= 32 or device.type == "cuda"
    batch = max(2, batch_size if small else min(batch_size, 64))
    x = torch.rand(steps * batch, spec.channels, spec.image_size, spec.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.zeros(len(x), dtype=torch.int8, device=device)
    epochs = replace(PAPER_TRAIN, epochs=3, lr_milestones=(), batch_size=batch)

    def per_image(run: Callable[[EpochCallback], object]) -> float:
        seconds: list[float] = []  # each epoch's wall time, which ends with a device sync (its loss)
        run(lambda info: seconds.append(info.seconds))
        return min(seconds[1:]) / len(x)

    encoder = per_image(lambda on_epoch: train_deep_svdd(initial_encoder(spec, None, 0, device), x, y, TrainConfig(optim=epochs), seed=0, on_epoch=on_epoch))
    ae = seeded_init(lambda: AutoEncoder(spec), 0).to(device)
    autoencoder = per_image(lambda on_epoch: pretrain_autoencoder(ae, x, epochs, seed=0, on_epoch=on_epoch))
    return StepCost(encoder, autoencoder)


def training_seconds(cost: StepCost, n_train: int, n_pretrain: int, epochs: int, pretrain_epochs: int) -> float:
    """Estimated seconds of pretraining plus training (decoding the images comes on top)."""
    return cost.encoder * n_train * epochs + cost.autoencoder * n_pretrain * pretrain_epochs
