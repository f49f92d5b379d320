"""How phi sees a training sample: the whole image, or patches of it. One training loop serves both.

A view turns a mini-batch of samples (images with labels, and masks where the anomaly's place is
known) into network inputs with labels, places the center c, and scores images. Whole images are
the paper's view; patches (core/patches.py) see native-resolution crops and score an image by its
worst patch. Adding a view means a class with these methods, never a new training loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ssd_cli.core.embedding import embed_shared, init_center
from ssd_cli.core.objectives import squared_distances
from ssd_cli.core.roles import ANOMALY
from ssd_cli.core.patches import (
    PatchSpec,
    check_patches,
    crop_at,
    grid_patches,
    image_scores,
    init_patch_center,
    patch_distances,
    random_crops,
)


@dataclass(frozen=True)
class Samples:
    """A mini-batch from one source: preprocessed images (N, C, H, W), labels y (N,) int8, and for
    synthetic anomalies the masks (N, H, W) of what was changed (None: location unknown)."""

    x: torch.Tensor
    y: torch.Tensor
    masks: torch.Tensor | None = None
    located: torch.Tensor | None = None  # (N,) where each labeled anomaly was last found (View.locate); None: find it now


class View(Protocol):
    scale: int  # the side of what phi sees, px: synthetic defects are sized against it
    samples_per_image: int  # training samples an epoch draws from each image

    def inputs(self, batch: Samples, encoder: torch.nn.Module, c: torch.Tensor | None, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]: ...

    def check(self, x: torch.Tensor, encoder: torch.nn.Module) -> None: ...

    def center(self, encoder: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor: ...

    def scores(self, encoder: torch.nn.Module, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...

    def scored_inputs(self, x: torch.Tensor) -> torch.Tensor: ...

    def locate(self, encoder: torch.nn.Module, c: torch.Tensor, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor | None: ...


@dataclass(frozen=True)
class WholeView:
    """The paper's view: phi sees the whole image; a sample with a mask is anomalous (it has a defect)."""

    scale: int
    samples_per_image: int = 1

    def inputs(self, batch: Samples, encoder: torch.nn.Module, c: torch.Tensor | None, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return batch.x, batch.y

    def check(self, x: torch.Tensor, encoder: torch.nn.Module) -> None:
        """Nothing to check: the network was built for the images' size."""

    def center(self, encoder: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        return init_center(encoder, x, y, eps)  # type: ignore[arg-type]

    def scores(self, encoder: torch.nn.Module, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return squared_distances(embed_shared(encoder, x), c).sqrt()  # type: ignore[arg-type]

    def scored_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What phi sees when the images are scored: the images themselves."""
        return x

    def locate(self, encoder: torch.nn.Module, c: torch.Tensor, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor | None:
        """Nothing to locate (and x is not even indexed): a labeled anomaly is trained on whole."""
        return None


# A crop of a masked image is anomalous when it holds at least half of the mask, or this share of its
# own pixels; a crop that only grazes the defect is neither a clean normal nor a clear anomaly.
MIN_DEFECT_SHARE = 0.02


@dataclass(frozen=True)
class PatchView:
    """phi sees patch_size crops; an image is as anomalous as its worst grid patch (core/patches.py).

    Unlabeled and labeled-normal images give a random crop each. Labeled anomalies, whose defect
    could be anywhere, give their most anomalous grid patch (multiple-instance learning): the one
    `locate` found at the start of the epoch when the batch carries it, else found now. Images with
    a mask give a crop around a random pixel of it, anomalous by the mask's share in it.
    """

    spec: PatchSpec
    samples_per_image: int = 4

    def __post_init__(self) -> None:
        if type(self.samples_per_image) is not int or self.samples_per_image < 1:
            raise ValueError(f"patches per image must be an integer >= 1, got {self.samples_per_image!r}")

    @property
    def scale(self) -> int:
        return self.spec.patch_size

    def inputs(self, batch: Samples, encoder: torch.nn.Module, c: torch.Tensor | None, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch.x, batch.y
        if batch.masks is not None:
            return self._masked(x, batch.masks, gen)
        own = torch.arange(len(x), device=x.device)
        normal, anomalous = own[y >= 0], own[y < 0]
        crops, _ = random_crops(x, normal, self.spec, gen)
        parts, labels = [crops], [y[y >= 0]]
        if len(anomalous):
            if batch.located is not None:
                worst = batch.located[anomalous]
            else:
                assert c is not None, "labeled anomalies need the center to find their worst patch"
                worst = self.locate(encoder, c, x, anomalous)
            parts.append(grid_patches(x[anomalous], self.spec)[torch.arange(len(anomalous), device=x.device), worst])
            labels.append(y[y < 0])
        return torch.cat(parts).contiguous(memory_format=torch.channels_last), torch.cat(labels)

    def _masked(self, x: torch.Tensor, masks: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A crop around a random defect pixel of each image, labeled anomalous where it holds the
        defect (holds_defect); a crop that only grazes it is left out, neither normal nor anomalous."""
        p = self.spec.patch_size
        flat = masks.flatten(1).float()
        pixel = torch.multinomial(flat, 1, generator=gen).flatten()
        rows, cols = pixel // masks.shape[2], pixel % masks.shape[2]
        within = torch.randint(0, p, (len(x), 2), generator=gen)
        top = (rows - within[:, 0]).clamp(0, self.spec.image_size - p)
        left = (cols - within[:, 1]).clamp(0, self.spec.image_size - p)
        offsets = torch.stack([top, left], dim=1)
        keep = holds_defect(masks, offsets, p)
        crops = crop_at(x[keep.to(x.device)], offsets[keep].to(x.device), p)
        return crops, torch.full((len(crops),), ANOMALY, dtype=torch.int8, device=x.device)

    def locate(self, encoder: torch.nn.Module, c: torch.Tensor, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Each image x[rows]'s most anomalous grid patch (flat index, phi in eval mode): where a labeled
        anomaly is trained. Training finds it once per epoch; searching each one's whole grid at every
        visit was most of the training time in small folders."""
        return patch_distances(encoder, c, x[rows], self.spec).flatten(1).argmax(dim=1).clone()  # type: ignore[arg-type]

    def check(self, x: torch.Tensor, encoder: torch.nn.Module) -> None:
        check_patches(x, self.spec, encoder)  # type: ignore[arg-type]

    def center(self, encoder: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        return init_patch_center(encoder, x, y, self.spec, eps)  # type: ignore[arg-type]

    def scores(self, encoder: torch.nn.Module, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return image_scores(patch_distances(encoder, c, x, self.spec), self.spec.top_k)  # type: ignore[arg-type]

    def scored_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What phi sees when the images are scored: every patch of their grids."""
        return grid_patches(x, self.spec).flatten(0, 1)


def holds_defect(masks: torch.Tensor, offsets: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Whether each crop (top-left corners offsets (N, 2)) of a masked image holds its defect: at least
    half of the mask's pixels, or MIN_DEFECT_SHARE of the crop's own. (N,) bool on the CPU."""
    inside = crop_at(masks[:, None], offsets, patch_size).flatten(1).sum(dim=1)
    total = masks.flatten(1).sum(dim=1)
    return (inside > 0) & ((2 * inside >= total) | (inside >= MIN_DEFECT_SHARE * patch_size**2))
