"""Augmentation of training images: copies as normal (or as anomalous) as the image they come from.

Six hundred photos of one kind of object are few for phi to learn from; mirrored at random, each is
seen in both orientations it could be photographed in, and phi learns the object rather than its
training set (colour-objects, docs/photos.md). Augmentation is applied to every real training image
of a mini-batch, each step, from the training's sampling stream (so a seed repeats a run), before
synthetic anomalies are made from the normal ones. Kinds:

- ``hflip``: mirrored left to right, each image with probability one half. A mirrored car, animal or
  garment is as normal as the original; a mirrored digit or text is not, so it is asked for by name
  or chosen for colour photos only (core/presets.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ssd_cli.core.config import AUGMENT_KINDS

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image of x (N, C, H, W) mirrored left to right with probability one half."""
    chosen = torch.nonzero(torch.rand(len(x), generator=gen) < 0.5).flatten().to(x.device)
    out = x.clone()
    out[chosen] = x[chosen].flip(-1)
    return out


AUGMENTATIONS: dict[str, Augmentation] = {"hflip": hflip}
assert tuple(AUGMENTATIONS) == AUGMENT_KINDS, "core/config.py names the kinds, in this order"


def augment(x: torch.Tensor, kinds: tuple[str, ...], gen: torch.Generator) -> torch.Tensor:
    """x with each named augmentation applied in turn (x itself when kinds is empty)."""
    for name in kinds:
        x = AUGMENTATIONS[name](x, gen)
    return x
