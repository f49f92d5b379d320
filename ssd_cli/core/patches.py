"""Patch-level SS-DSVDD: phi sees crops at native resolution, an image is as anomalous as its worst patch.

A whole-image network pools a 3-15 px defect on a 128 px photo away. Here phi is a network for
patch_size inputs, trained on random crops of the training images; an image is scored on a regular
grid of patches, which gives an anomaly map, and its score is the map's maximum.

Labeled anomalies are images whose defect location is unknown, so they enter objective (4) as
multiple-instance bags: only the patch phi currently finds most anomalous is pushed away from c.
Soft-boundary (3) is not offered: its radius would be a quantile over patches, not over images.

Like training.py, nothing here prints; progress goes to an EpochCallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ssd_cli.core.config import Objective, OptimConfig, TrainConfig
from ssd_cli.core.nets import MAX_IMAGE_SIZE, AutoEncoder, Encoder
from ssd_cli.core.objectives import one_class_loss, squared_distances
from ssd_cli.core.training import (
    DeepSVDDResult,
    EpochCallback,
    embed,
    eval_batch_size,
    fit,
    init_center,
    reconstruction_loss,
)

# Patches on one image's scoring grid; bounds the memory of one image's grid (a 1024 px image with
# 32 px patches at stride 8 has 125^2 = 15,625).
MAX_GRID_PATCHES = 128 * 128

# Crop positions get their own random stream, apart from fit's permutation stream of the same seed.
_CROP_STREAM = 0x5EED_C40B


@dataclass(frozen=True)
class PatchSpec:
    """Images of image_size px scored on a grid of patch_size px patches, stride px apart.

    The grid starts at the top-left corner and its last patch touches the bottom-right border, so
    (image_size - patch_size) must be a multiple of stride; stride <= patch_size so that every
    pixel lies in some patch (a defect in a gap would never be scored).
    """

    image_size: int
    patch_size: int
    stride: int

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

    @property
    def grid(self) -> int:
        """Patches per side of the scoring grid."""
        return (self.image_size - self.patch_size) // self.stride + 1

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "patch_size": self.patch_size, "stride": self.stride, "grid": self.grid}

    @classmethod
    def from_dict(cls, d: object) -> PatchSpec:
        """A spec from `to_dict` output, validated (ValueError); `grid`, if given, must match."""
        if not isinstance(d, dict):
            raise ValueError(f"a patch description must be a JSON object, got {type(d).__name__}")
        known = {"image_size", "patch_size", "stride"}
        missing, unknown = sorted(known - set(d)), sorted(map(str, set(d) - known - {"grid"}))
        if missing or unknown:
            raise ValueError(f"the patch description lacks {missing} or has unknown keys {unknown}")
        spec = cls(d["image_size"], d["patch_size"], d["stride"])
        if "grid" in d and d["grid"] != spec.grid:
            raise ValueError(f"inconsistent patch description: grid {d['grid']!r}, but its sizes give {spec.grid}")
        return spec


def _check(x: torch.Tensor, p: PatchSpec, encoder: Encoder | None = None) -> None:
    if x.dim() != 4 or x.shape[2] != p.image_size or x.shape[3] != p.image_size:
        raise ValueError(f"images must be N x C x {p.image_size} x {p.image_size}, got {tuple(x.shape)}")
    if encoder is not None and (encoder.spec.image_size != p.patch_size or encoder.spec.channels != x.shape[1]):
        raise ValueError(
            f"network '{encoder.spec.name}' takes {encoder.spec.channels} x {encoder.spec.image_size} px inputs, "
            f"but the patches are {x.shape[1]} x {p.patch_size} px"
        )


def grid_patches(x: torch.Tensor, p: PatchSpec) -> torch.Tensor:
    """(N, C, S, S) -> (N, G*G, C, P, P); patch i*G + j has its top-left corner at (i*stride, j*stride)."""
    _check(x, p)
    n, ch, g, size = x.shape[0], x.shape[1], p.grid, p.patch_size
    windows = x.unfold(2, size, p.stride).unfold(3, size, p.stride)  # (N, C, G, G, P, P), a view
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(n, g * g, ch, size, size)


def crop_generator(seed: int) -> torch.Generator:
    """The CPU generator of crop positions for `seed` (deterministic)."""
    return torch.Generator().manual_seed(seed + _CROP_STREAM)


def random_crops(x: torch.Tensor, images: torch.Tensor, p: PatchSpec, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One patch_size crop of each x[images[i]] at a random pixel offset; returns (crops, offsets (B, 2) = row, col).

    Any offset, not only grid positions: more distinct patches, and phi must not rely on alignment.
    The crops come out channels_last, as fit's networks run.
    """
    size, span = p.patch_size, p.image_size - p.patch_size + 1
    offsets = torch.randint(0, span, (len(images), 2), generator=gen).to(x.device)
    ar = torch.arange(size, device=x.device)
    rows, cols = offsets[:, :1] + ar, offsets[:, 1:] + ar  # (B, P) each
    # Advanced indices around a slice: the result is (B, P, P, C); permuted back it is channels_last.
    chosen = x[images]  # the images first (an ImageSet makes them then), then the crops of each
    crops = chosen[torch.arange(len(images), device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return crops, offsets


def _virtual(n_images: int, patches_per_image: int) -> int:
    """Samples per epoch: every image visited patches_per_image times (index v -> image v % n)."""
    if type(patches_per_image) is not int or patches_per_image < 1:
        raise ValueError(f"patches per image must be an integer >= 1, got {patches_per_image!r}")
    return n_images * patches_per_image


def pretrain_patch_autoencoder(
    ae: AutoEncoder,
    x_unlabeled: torch.Tensor,
    p: PatchSpec,
    optim: OptimConfig,
    *,
    seed: int,
    patches_per_image: int,
    on_epoch: EpochCallback | None = None,
) -> list[float]:
    """The autoencoder on random crops of the unlabeled images (Appendix A, at patch scale)."""
    _check(x_unlabeled, p, ae.encoder)
    n, gen = len(x_unlabeled), crop_generator(seed)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        crops, _ = random_crops(x_unlabeled, idx % n, p, gen)
        return reconstruction_loss(ae(crops), crops)

    return fit(ae, _virtual(n, patches_per_image), batch_loss, optim, seed=seed, device=x_unlabeled.device, on_epoch=on_epoch)


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
    _check(x, p, encoder)
    return init_center(_PatchMean(encoder, p), x, y, eps)  # type: ignore[arg-type]  # duck-typed Encoder


def _hardest_patches(encoder: Encoder, c: torch.Tensor, x: torch.Tensor, p: PatchSpec) -> torch.Tensor:
    """Index (into the grid) of each image's most anomalous patch, as scoring sees it (eval mode)."""
    return patch_distances(encoder, c, x, p).flatten(1).argmax(dim=1).clone()  # clone: a normal tensor, usable as an index under autograd


def patch_batch_loss(
    encoder: Encoder, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, p: PatchSpec, cfg: TrainConfig, gen: torch.Generator
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Objective (4) on a mini-batch of image indices (batch_loss for training.fit).

    An unlabeled or labeled-normal image contributes one random crop. A labeled-anomalous image
    contributes only its most anomalous grid patch (multiple-instance learning: we do not know where
    its defect is, and the rest of it is normal texture). That patch is located without gradient in
    eval mode, then forwarded alone with the crops: the gradient of a max is its argmax's, and the
    other G*G - 1 patches neither get a gradient nor enter the batch-norm statistics.
    """

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        images = idx % len(x)
        labels = y[images]
        normal, anomalous = images[labels >= 0], images[labels < 0]
        crops, _ = random_crops(x, normal, p, gen)
        parts, kinds = [crops], [labels[labels >= 0]]
        if len(anomalous):
            worst = _hardest_patches(encoder, c, x[anomalous], p)
            parts.append(grid_patches(x[anomalous], p)[torch.arange(len(anomalous), device=x.device), worst])
            kinds.append(labels[labels < 0])
        batch = torch.cat(parts).contiguous(memory_format=torch.channels_last)
        dist = squared_distances(encoder(batch), c)
        return one_class_loss(dist, torch.cat(kinds), cfg.eta, cfg.eps)  # mean over n + m, as objectives.py

    return batch_loss


def train_patch_deep_svdd(
    encoder: Encoder,
    x: torch.Tensor,
    y: torch.Tensor,
    p: PatchSpec,
    cfg: TrainConfig,
    *,
    seed: int,
    patches_per_image: int,
    on_epoch: EpochCallback | None = None,
) -> DeepSVDDResult:
    """Algorithm 1 on patches, one-class objective (4): each epoch visits every image patches_per_image times."""
    if cfg.objective is not Objective.ONE_CLASS:
        raise ValueError(
            f"patch-level training supports the one-class objective only, not {cfg.objective.value}: a radius R "
            "fitted on patches would not be a threshold on image scores (the max over patches)"
        )
    _check(x, p, encoder)
    c = init_patch_center(encoder, x, y, p, cfg.center_eps).to(x.device)
    loss = patch_batch_loss(encoder, x, y, c, p, cfg, crop_generator(seed))
    losses = fit(encoder, _virtual(len(x), patches_per_image), loss, cfg.optim, seed=seed, device=x.device, on_epoch=on_epoch)
    return DeepSVDDResult(c, 0.0, losses)


@torch.inference_mode()
def patch_distances(encoder: Encoder, c: torch.Tensor, x: torch.Tensor, p: PatchSpec, batch_size: int | None = None) -> torch.Tensor:
    """The anomaly map: ||phi(patch) - c|| for every grid patch, (N, G, G), eval mode.

    Images are cut into patches a chunk at a time, about batch_size patches (at least one image),
    so memory stays bounded however many images there are.
    """
    _check(x, p, encoder)
    g = p.grid
    size = batch_size or eval_batch_size(x.device)
    maps = [
        squared_distances(embed(encoder, grid_patches(chunk, p).flatten(0, 1), size), c).sqrt().view(len(chunk), g, g)
        for chunk in x.split(max(1, size // g**2))
    ]
    return torch.cat(maps) if maps else torch.zeros((0, g, g), device=x.device)


def image_scores(maps: torch.Tensor) -> torch.Tensor:
    """An image is as anomalous as its worst patch: the max over its map, (N,)."""
    return maps.flatten(1).amax(dim=1)
