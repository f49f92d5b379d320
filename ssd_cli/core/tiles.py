"""Tiles: large photos seen at native resolution (or a chosen scale) instead of squashed to the input.

A 2,000 px photo squashed to 256 px shrinks an 8 px defect to 1 px. A tiled model scales the image
by `scale` (1 = native), covers it with a regular grid of tile_size x tile_size tiles, and lets the
patch-level model see each tile as it would see a whole image (core/patches.py): training samples
are tiles, an image scores as its worst tile (its worst patch over all tiles), and its anomaly map is
stitched from the tiles' maps.

This module is the geometry (where the tiles lie, which ones a training image keeps, cutting
them out) and the stitching; decoding is data/tiles.py's, scoring core/scoring.py's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ssd_cli.core.maps import pixel_maps
from ssd_cli.core.nets import MAX_IMAGE_SIZE
from ssd_cli.core.patches import PatchSpec, image_scores

_CHUNK = 64  # tile maps made at a time when stitching: bounds the memory of a very large image


@dataclass(frozen=True)
class TileSpec:
    """Images scaled by `scale`, covered by tile_size px tiles that overlap by at least `overlap` px.

    Along each side the tiles start at 0 and end on the border, spread evenly and at most
    tile_size - overlap apart, so every pixel lies in a tile. With overlap = the patch size, every
    patch-sized window of the image lies whole in some tile: a defect is never cut by a tile border
    more than by the patch grid itself. A scaled side shorter than a tile is stretched to one tile.
    """

    tile_size: int
    scale: float
    overlap: int

    def __post_init__(self) -> None:
        if type(self.tile_size) is not int or not 1 <= self.tile_size <= MAX_IMAGE_SIZE:
            raise ValueError(f"tile size must be an integer from 1 to {MAX_IMAGE_SIZE}, got {self.tile_size!r}")
        if type(self.overlap) is not int or not 0 <= self.overlap < self.tile_size:
            raise ValueError(f"tile overlap must be an integer from 0 to {self.tile_size - 1}, got {self.overlap!r}")
        if type(self.scale) not in (int, float) or not (math.isfinite(self.scale) and 0 < self.scale <= 1):
            raise ValueError(f"tile scale must be a number in (0, 1], got {self.scale!r}")

    def scaled(self, wh: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of an image of wh once scaled: what the tiles cover."""
        return max(self.tile_size, round(wh[0] * self.scale)), max(self.tile_size, round(wh[1] * self.scale))

    def starts(self, length: int) -> list[int]:
        """Where the tiles along a side of `length` scaled pixels begin: 0 first, length - tile last."""
        span = length - self.tile_size
        if span <= 0:
            return [0]
        n = -(-span // (self.tile_size - self.overlap)) + 1
        return [round(i * span / (n - 1)) for i in range(n)]

    def boxes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The (top, left) corners of the tiles of a scaled image, row by row."""
        return [(top, left) for top in self.starts(height) for left in self.starts(width)]

    def to_dict(self) -> dict:
        return {"tile_size": self.tile_size, "scale": self.scale, "overlap": self.overlap}

    @classmethod
    def from_dict(cls, d: object) -> TileSpec:
        """A spec from `to_dict` output, validated (ValueError)."""
        if not isinstance(d, dict):
            raise ValueError(f"a tile description must be a JSON object, got {type(d).__name__}")
        known = {"tile_size", "scale", "overlap"}
        missing, unknown = sorted(known - set(d)), sorted(map(str, set(d) - known))
        if missing or unknown:
            raise ValueError(f"the tile description lacks {missing} or has unknown keys {unknown}")
        return cls(d["tile_size"], d["scale"], d["overlap"])


def pick_tiles(n_tiles: int, k: int, seed: int, image: int) -> np.ndarray:
    """Which of an image's n_tiles a training set keeps: at most k, drawn without replacement from a
    generator of (seed, image), so the choice does not depend on decoding order or threads."""
    if n_tiles <= k:
        return np.arange(n_tiles)
    return np.sort(np.random.default_rng([seed, image]).choice(n_tiles, size=k, replace=False))


def cut_tiles(image: np.ndarray | torch.Tensor, tile: TileSpec, which: Sequence[int] | None = None) -> torch.Tensor:
    """The tiles of a scaled (C, h, w) image, (n, C, T, T) copies in `TileSpec.boxes` order (only
    those at positions `which`, if given)."""
    data = np.asarray(image)
    boxes = tile.boxes(data.shape[1], data.shape[2])
    chosen = boxes if which is None else [boxes[i] for i in which]
    t = tile.tile_size
    if not chosen:
        return torch.zeros((0, data.shape[0], t, t), dtype=torch.uint8)
    return torch.from_numpy(np.stack([data[:, top : top + t, left : left + t] for top, left in chosen]))


@dataclass(frozen=True)
class TiledGrids:
    """One image's patch scores, a (G, G) grid per tile in `TileSpec.boxes` order, and the size of
    the scaled image they tile: all a map needs, a few kB where the map itself takes megabytes."""

    grids: np.ndarray  # (n_tiles, G, G) float32
    height: int
    width: int

    def score(self, top_k: int = 1) -> float:
        """The image's score: the mean of its top_k largest patch distances over all tiles
        (patches.image_scores over the tiles together)."""
        return float(image_scores(torch.from_numpy(self.grids).reshape(1, -1), top_k)[0])


def stitch(t: TiledGrids, tile: TileSpec, patch: PatchSpec, sigma: float | None = None) -> np.ndarray:
    """The (height, width) float32 map of a scaled image: each tile's pixel map (core/maps.py) put
    where the tile is, the maximum where tiles overlap: a defect that one tile sees whole is not
    diluted by a neighbour that sees it cut at its border, and the map never exceeds the image's
    worst patch."""
    boxes = tile.boxes(t.height, t.width)
    if len(boxes) != len(t.grids):
        raise ValueError(f"a {t.width}x{t.height} image has {len(boxes)} tiles, but {len(t.grids)} grids were given")
    out = np.full((t.height, t.width), -np.inf, dtype=np.float32)
    size = tile.tile_size
    for start in range(0, len(boxes), _CHUNK):
        maps = pixel_maps(t.grids[start : start + _CHUNK], patch, sigma)
        for (top, left), m in zip(boxes[start : start + _CHUNK], maps):
            region = out[top : top + size, left : left + size]
            np.maximum(region, m, out=region)
    return out
