"""The training record a model or autoencoder file keeps (`ssd info` shows it), built here for
every trainer: the engine (`ssd train`, `ssd pretrain`, `Detector.fit`) and the benchmark.

A model's record is made by core/pipeline.py, the one place a model is trained, with the engine's
additions (pretraining, input choice, tiles) from the builders below.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ssd_cli.core.config import OptimConfig
from ssd_cli.core.roles import Role

# How a record names the number of training images of each role.
COUNT_KEYS = {Role.UNLABELED: "n_unlabeled", Role.NORMALS: "n_labeled_normal", Role.ANOMALIES: "n_labeled_anomalous", Role.OUTLIERS: "n_outliers"}


def pretraining_record(n_unlabeled: int, optim: OptimConfig, losses: list[float], seconds: float, seed: int, device: torch.device) -> dict:
    """An autoencoder's record: what it was trained on, how, how long and how far the loss fell."""
    return {
        "n_unlabeled": n_unlabeled,
        "epochs": optim.epochs,
        "final_loss": losses[-1] if losses else None,
        "seconds": round(seconds, 2),
        "seed": seed,
        "device": str(device),
        "config": optim.to_dict(),
    }


def pretraining_summary(optim: OptimConfig | None, seconds: float, pretrained_from: str | None) -> dict:
    """What a model's record says of the pretraining that gave phi its first weights (optim None:
    none was run, a pretrained file was given or its epochs were 0)."""
    return {
        "pretrain_epochs": optim.epochs if optim is not None else 0,
        "pretrain_config": optim.to_dict() if optim is not None else None,
        "pretrain_seconds": round(seconds, 2),
        "pretrained_from": pretrained_from,
    }


def tile_record(images: Mapping[Role, int], tiles: Mapping[Role, int], per_image: int) -> dict:
    """A tiled model's: the images trained on per role (they replace the counts of samples, which
    are tiles), the tiles per role, and how many tiles each image kept at most."""
    return {**{COUNT_KEYS[role]: n for role, n in images.items()}, "tiles": {"per_image": per_image, "trained": {COUNT_KEYS[role]: n for role, n in tiles.items()}}}
