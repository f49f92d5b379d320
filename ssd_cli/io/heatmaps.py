"""Anomaly maps as pictures: PNG heatmaps at the image's own size, and overlays on thumbnails.

One colour scale for both, fixed by the threshold rather than by each map's range, so colours
mean the same in every image: a value v is shown at v / threshold, clipped to [0, 2]. Below the
threshold (0 to 1) the scale runs from dark blue to light cyan, from the threshold on (1 to 2 and
beyond) from yellow to dark red: warm pixels are those scored above the threshold, and a map with
no warm pixel is an image the threshold passes as normal.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ssd_cli.core.config import Resize
from ssd_cli.core.maps import pixel_maps
from ssd_cli.core.patches import PatchSpec
from ssd_cli.core.tiles import TiledGrids, TileSpec, stitch
from ssd_cli.data.images import stretch_map, unfit_map

SCALE_TOP = 2.0  # the top of the colour scale, in thresholds

# (position on the scale in thresholds, RGB): cold below the threshold, warm from it on.
_COLD = ((0.0, (8, 16, 90)), (0.5, (30, 100, 200)), (1.0, (150, 225, 245)))
_WARM = ((1.0, (255, 235, 60)), (1.5, (245, 120, 20)), (2.0, (170, 0, 20)))
_STEPS = 128  # colours per threshold


def _ramp(anchors: tuple[tuple[float, tuple[int, int, int]], ...], positions: np.ndarray) -> np.ndarray:
    at = [a for a, _ in anchors]
    return np.stack([np.interp(positions, at, [rgb[k] for _, rgb in anchors]) for k in range(3)], axis=1)


def _palette() -> np.ndarray:
    """(256, 3) uint8: entry i shows values from i / 128 thresholds; entry 128 starts at the threshold."""
    centres = (np.arange(2 * _STEPS) + 0.5) / _STEPS
    cold, warm = centres < 1.0, centres >= 1.0
    rgb = np.zeros((2 * _STEPS, 3))
    rgb[cold], rgb[warm] = _ramp(_COLD, centres[cold]), _ramp(_WARM, centres[warm])
    return np.rint(rgb).astype(np.uint8)


PALETTE = _palette()


def mid_scale(threshold: float, values: np.ndarray) -> float:
    """The value shown at the threshold's place: the threshold, or, where it has no scale (0 or
    below, infinite), the map's own largest value."""
    if math.isfinite(threshold) and threshold > 0:
        return threshold
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 0.0
    return top if math.isfinite(top) and top > 0 else 1.0


def positions(values: np.ndarray, threshold: float) -> np.ndarray:
    """values / threshold clipped to [0, 2] (NaN stays NaN): the place of each value on the scale."""
    return np.clip(np.asarray(values, dtype=np.float32) / mid_scale(threshold, values), 0.0, SCALE_TOP)


def colours(values: np.ndarray, threshold: float) -> np.ndarray:
    """(..., 3) uint8 RGB of values on the threshold's colour scale (NaN shows as the lowest colour)."""
    v = np.nan_to_num(positions(values, threshold), nan=0.0)
    return PALETTE[np.minimum((v * _STEPS).astype(np.int64), 2 * _STEPS - 1)]


def heatmap_png(image_map: np.ndarray, threshold: float) -> bytes:
    """A PNG of an (H, W) map: RGB, or RGBA with the pixels the model did not see (NaN) transparent."""
    rgb = colours(image_map, threshold)
    unseen = np.isnan(image_map)
    im = Image.fromarray(np.dstack([rgb, np.where(unseen, 0, 255).astype(np.uint8)]), "RGBA") if unseen.any() else Image.fromarray(rgb, "RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def overlay(im: Image.Image, image_map: np.ndarray, threshold: float) -> Image.Image:
    """The map laid over an RGB picture of its size: the more anomalous, the more opaque (a quarter
    at 0, nearly half at the threshold, two thirds at twice it), so the picture stays visible and
    hot spots stand out; nothing over pixels the model did not see."""
    v = positions(image_map, threshold)
    alpha = np.where(np.isnan(v), 0.0, 0.25 + 0.2 * np.nan_to_num(v))[..., None]
    mixed = np.asarray(im, dtype=np.float32) * (1 - alpha) + colours(image_map, threshold) * alpha
    return Image.fromarray(np.clip(mixed + 0.5, 0, 255).astype(np.uint8), "RGB")


@dataclass(frozen=True)
class MapGeometry:
    """Where a patch-level model's scores lie in an image: its patch grid, how images were fitted
    to its input, and for a tiled model its tiles. Enough to turn one image's patch scores (a
    (G, G) grid, or a TiledGrids) into a map of that image at any size."""

    patch: PatchSpec
    resize: Resize
    tile: TileSpec | None = None

    def at_input(self, grids: np.ndarray | TiledGrids) -> np.ndarray:
        """The map at the resolution the model saw: the S x S input, or a tiled model's scaled image."""
        if isinstance(grids, TiledGrids):
            assert self.tile is not None, "tile scores need a tiled model's geometry"
            return stitch(grids, self.tile, self.patch)
        return pixel_maps(np.asarray(grids)[None], self.patch)[0]

    def at_image(self, grids: np.ndarray | TiledGrids, wh: tuple[int, int]) -> np.ndarray:
        """The map of one image as displayed at (width, height): (height, width) float32, NaN
        where the model did not look (crop's margins). A tiled model saw the whole image, scaled:
        its map is stretched back."""
        if isinstance(grids, TiledGrids):
            return stretch_map(self.at_input(grids), wh)
        return unfit_map(self.at_input(grids), wh, self.resize)
