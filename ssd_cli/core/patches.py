"""Patch-level SS-DSVDD: phi sees crops at native resolution, an image is as anomalous as its worst patch.

A whole-image network pools a 3-15 px defect on a 128 px photo away. Here phi is a network for
patch_size inputs, trained on random crops of the training images; an image is scored on a regular
grid of patches, which gives an anomaly map, and its score is the map's maximum.

This module is the geometry (grid, crops) and the scoring; how patches are drawn for training is the
patch view's (core/views.py), trained by the one loop of core/training.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssd_cli.core.embedding import embed, eval_batch_size, init_center
from ssd_cli.core.nets import MAX_IMAGE_SIZE, Encoder
from ssd_cli.core.objectives import squared_distances

# Patches on one image's scoring grid; bounds the memory of one image's grid (a 1024 px image with
# 32 px patches at stride 8 has 125^2 = 15,625).
MAX_GRID_PATCHES = 128 * 128


@dataclass(frozen=True)
class PatchSpec:
    """Images of image_size px scored on a grid of patch_size px patches, stride px apart.

    The grid starts at the top-left corner and its last patch touches the bottom-right border, so
    (image_size - patch_size) must be a multiple of stride; stride <= patch_size so that every
    pixel lies in some patch (a defect in a gap would never be scored). An image scores as the mean
    of its top_k largest patch distances (1: its worst patch, as files of ssd 0.4 and before).
    """

    image_size: int
    patch_size: int
    stride: int
    top_k: int = 1

    def __post_init__(self) -> None:
        bounds = (("image size", self.image_size, MAX_IMAGE_SIZE), ("patch size", self.patch_size, self.image_size), ("stride", self.stride, self.patch_size))
        for name, value, high in bounds:
            if type(value) is not int or not 1 <= value <= high:  # type(): True and 32.0 are not sizes
                raise ValueError(f"{name} must be an integer from 1 to {high}, got {value!r}")
        if (self.image_size - self.patch_size) % self.stride:
            raise ValueError(
                f"the patch grid must end on the border: image size {self.image_size} - patch size {self.patch_size} "
                f"is not a multiple of stride {self.stride}"
            )
        if self.grid**2 > MAX_GRID_PATCHES:
            raise ValueError(f"{self.grid}x{self.grid} patches per image, more than the {MAX_GRID_PATCHES:,} allowed: use a larger stride")
        if type(self.top_k) is not int or not 1 <= self.top_k <= self.grid**2:
            raise ValueError(f"top_k must be an integer from 1 to the {self.grid**2} patches of the grid, got {self.top_k!r}")

    @property
    def grid(self) -> int:
        """Patches per side of the scoring grid."""
        return (self.image_size - self.patch_size) // self.stride + 1

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "patch_size": self.patch_size, "stride": self.stride, "grid": self.grid, "top_k": self.top_k}

    @classmethod
    def from_dict(cls, d: object) -> PatchSpec:
        """A spec from `to_dict` output, validated (ValueError); `grid`, if given, must match; without
        `top_k` (files of ssd 0.4 and before) an image scores as its worst patch."""
        if not isinstance(d, dict):
            raise ValueError(f"a patch description must be a JSON object, got {type(d).__name__}")
        known = {"image_size", "patch_size", "stride"}
        missing, unknown = sorted(known - set(d)), sorted(map(str, set(d) - known - {"grid", "top_k"}))
        if missing or unknown:
            raise ValueError(f"the patch description lacks {missing} or has unknown keys {unknown}")
        spec = cls(d["image_size"], d["patch_size"], d["stride"], d.get("top_k", 1))
        if "grid" in d and d["grid"] != spec.grid:
            raise ValueError(f"inconsistent patch description: grid {d['grid']!r}, but its sizes give {spec.grid}")
        return spec


def check_patches(x: torch.Tensor, p: PatchSpec, encoder: Encoder | None = None) -> None:
    if x.dim() != 4 or x.shape[2] != p.image_size or x.shape[3] != p.image_size:
        raise ValueError(f"images must be N x C x {p.image_size} x {p.image_size}, got {tuple(x.shape)}")
    if encoder is not None and (encoder.spec.image_size != p.patch_size or encoder.spec.channels != x.shape[1]):
        raise ValueError(
            f"network '{encoder.spec.name}' takes {encoder.spec.channels} x {encoder.spec.image_size} px inputs, "
            f"but the patches are {x.shape[1]} x {p.patch_size} px"
        )


def grid_patches(x: torch.Tensor, p: PatchSpec) -> torch.Tensor:
    """(N, C, S, S) -> (N, G*G, C, P, P); patch i*G + j has its top-left corner at (i*stride, j*stride)."""
    check_patches(x, p)
    n, ch, g, size = x.shape[0], x.shape[1], p.grid, p.patch_size
    windows = x.unfold(2, size, p.stride).unfold(3, size, p.stride)  # (N, C, G, G, P, P), a view
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(n, g * g, ch, size, size)


def random_crops(x: torch.Tensor, images: torch.Tensor, p: PatchSpec, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One patch_size crop of each x[images[i]] at a random pixel offset; returns (crops, offsets (B, 2) = row, col).

    Any offset, not only grid positions: more distinct patches, and phi must not rely on alignment.
    The crops come out channels_last, as fit's networks run.
    """
    span = p.image_size - p.patch_size + 1
    offsets = torch.randint(0, span, (len(images), 2), generator=gen).to(x.device)
    return crop_at(x[images], offsets, p.patch_size), offsets  # the images first (an ImageSet makes them then)


def crop_at(x: torch.Tensor, offsets: torch.Tensor, size: int) -> torch.Tensor:
    """The size x size crop of each x[i] whose top-left corner is offsets[i] = (row, col); channels_last."""
    ar = torch.arange(size, device=x.device)
    rows, cols = offsets[:, :1] + ar, offsets[:, 1:] + ar  # (B, P) each
    # Advanced indices around a slice: the result is (B, P, P, C); permuted back it is channels_last.
    return x[torch.arange(len(x), device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class _PatchMean(nn.Module):
    """phi averaged over each image's grid patches: through it training.init_center places c over patches.

    Every image has G*G patches, so the mean over images of these means is the mean over all patches.
    """

    def __init__(self, encoder: Encoder, p: PatchSpec) -> None:
        super().__init__()
        self.encoder, self.p, self.spec = encoder, p, encoder.spec
        self.train(encoder.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_chunk = max(1, eval_batch_size(x.device) // self.p.grid**2)
        means = [embed(self.encoder, grid_patches(chunk, self.p).flatten(0, 1)).view(len(chunk), -1, self.spec.rep_dim).mean(dim=1) for chunk in x.split(per_chunk)]
        return torch.cat(means)


def init_patch_center(encoder: Encoder, x: torch.Tensor, y: torch.Tensor, p: PatchSpec, eps: float = 0.1) -> torch.Tensor:
    """c = mean of phi (eval mode) over every grid patch of the unlabeled and labeled-normal images.

    training.init_center's rules apply unchanged: labeled anomalies never count, |c_k| < eps -> +-eps.
    """
    check_patches(x, p, encoder)
    return init_center(_PatchMean(encoder, p), x, y, eps)  # type: ignore[arg-type]  # duck-typed Encoder


@torch.inference_mode()
def patch_distances(encoder: Encoder, c: torch.Tensor, x: torch.Tensor, p: PatchSpec, batch_size: int | None = None) -> torch.Tensor:
    """The anomaly map: ||phi(patch) - c|| for every grid patch, (N, G, G), eval mode.

    Images are cut into patches a chunk at a time, about batch_size patches (at least one image),
    so memory stays bounded however many images there are.
    """
    check_patches(x, p, encoder)
    g = p.grid
    size = batch_size or eval_batch_size(x.device)
    maps = [
        squared_distances(embed(encoder, grid_patches(chunk, p).flatten(0, 1), size), c).sqrt().view(len(chunk), g, g)
        for chunk in x.split(max(1, size // g**2))
    ]
    return torch.cat(maps) if maps else torch.zeros((0, g, g), device=x.device)


def image_scores(maps: torch.Tensor, top_k: int = 1) -> torch.Tensor:
    """An image's score from its map, (N,): the mean of its top_k largest patch distances. A defect
    point lies in (patch / stride)^2 grid patches, so their mean is steadier than the one worst patch,
    which any single odd patch of normal texture can set."""
    flat = maps.flatten(1)
    if top_k == 1:
        return flat.amax(dim=1)
    return flat.topk(min(top_k, flat.shape[1]), dim=1).values.mean(dim=1)
