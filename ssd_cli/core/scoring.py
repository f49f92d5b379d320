"""Scoring with a trained model: the exact preprocessing and network of training, in inference mode.

The engine under the public `Detector` (api.py), which lists folders, applies thresholds and
reports progress; a Scorer only turns decoded images into scores (data/score_files.py streams
image files through it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ssd_cli.core.embedding import eval_batch_size
from ssd_cli.core.model import SavedModel
from ssd_cli.core.objectives import squared_distances
from ssd_cli.core.patches import image_scores, patch_distances
from ssd_cli.core.tiles import TiledGrids, cut_tiles

TILES_AT_ONCE = 64  # a tiled image's tiles are cut and scored this many at a time

# Per image, what its anomaly map is made from: patch-level models, an (N, G, G) array of patch
# scores (one grid per image); tiled models, one TiledGrids per image. None for whole-image models.
Grids = np.ndarray | list[TiledGrids]


def join_grids(parts: Sequence[Grids]) -> Grids:
    """Consecutive runs of images' grids as one run: arrays are concatenated, lists joined."""
    if any(isinstance(p, list) for p in parts):
        return [g for p in parts for g in p]
    return np.concatenate(parts)


class Scorer:
    def __init__(self, saved: SavedModel, device: torch.device) -> None:
        self.saved = saved
        self.device = device
        self.encoder = saved.encoder(device).to(memory_format=torch.channels_last)
        self.c = saved.c.to(device)

    @torch.inference_mode()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """Scores s(x) = ||phi(x) - c|| for uint8 images already at the model's size and channels;
        for a patch-level model, the largest patch score of each image."""
        if self.saved.patch is not None:
            return image_scores(self.score_maps(images), self.saved.patch.top_k)
        out = [
            squared_distances(self.encoder(self._input(chunk)), self.c).sqrt()
            for chunk in images.split(eval_batch_size(self.device))
        ]
        return torch.cat(out).cpu() if out else torch.zeros(0)

    @torch.inference_mode()
    def score_maps(self, images: torch.Tensor) -> torch.Tensor:
        """A patch-level model's anomaly maps: (N, G, G) scores of the grid patches, on the CPU."""
        assert self.saved.patch is not None, "whole-image models have no anomaly map"
        maps = [patch_distances(self.encoder, self.c, self._input(chunk), self.saved.patch) for chunk in images.split(64)]
        return torch.cat(maps).cpu() if maps else torch.zeros((0, self.saved.patch.grid, self.saved.patch.grid))

    def score_tiled(self, image: np.ndarray | torch.Tensor) -> TiledGrids:
        """A tiled model's patch scores of one scaled (C, h, w) uint8 image, every tile of it; the
        tiles are cut TILES_AT_ONCE at a time, so memory stays that of the image and a few tiles."""
        tile = self.saved.tile
        assert tile is not None, "only tiled models score tiles"
        h, w = image.shape[1], image.shape[2]
        n = len(tile.boxes(h, w))
        grids = [self.score_maps(cut_tiles(image, tile, range(i, min(i + TILES_AT_ONCE, n)))) for i in range(0, n, TILES_AT_ONCE)]
        return TiledGrids(torch.cat(grids).numpy(), h, w)

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        x = self.saved.preprocessor(images.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last)
