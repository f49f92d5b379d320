"""Anomaly maps at the model's input resolution, from a patch-level model's grid of patch scores.

A patch score belongs to every pixel of its patch, so a pixel gets the mean score of the patches
that cover it; the result is constant over stride x stride cells, and a Gaussian then smooths the
cell edges. Both steps are linear and act on rows and columns alike, so the whole map is
W @ grid @ W.T with one (size, grid) matrix W per patch geometry: cheap, exact and deterministic.
Every row of W sums to 1, so each map value is a weighted mean of patch scores: a map never
exceeds its image's score (the largest patch score) and is comparable with the same threshold.

Whole-image models have no map: their one score is a distance of the whole image's embedding,
and nothing in it says where in the image the anomaly is.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ssd_cli.core.patches import PatchSpec

# The Gaussian is cut at this many sigmas (as scipy.ndimage's default): beyond it weights are < 3e-4.
TRUNCATE = 4.0
_CHUNK = 64  # grids turned into maps at a time


def default_sigma(spec: PatchSpec) -> float:
    """stride / 2 px: the grid samples the image every stride px, so the map holds no detail finer
    than that; a Gaussian of sigma stride/2 (full width at half height about 1.2 strides) removes
    the steps between stride-sized cells without blurring beyond the grid's own resolution. For
    the default 32 px patches at stride 16 on 128 px inputs that is 8 px (anomalib uses 4 px at 256)."""
    return spec.stride / 2


def coverage(spec: PatchSpec) -> np.ndarray:
    """(size, grid): row y, column i is 1 / (patches covering y) if patch row i covers pixel row y."""
    covers = np.zeros((spec.image_size, spec.grid))
    for i in range(spec.grid):
        covers[i * spec.stride : i * spec.stride + spec.patch_size, i] = 1.0
    return covers / covers.sum(axis=1, keepdims=True)  # every pixel is covered: PatchSpec ensures stride <= patch


def gaussian(size: int, sigma: float) -> np.ndarray:
    """(size, size) 1-d Gaussian smoothing along an axis; each row is renormalised over the pixels
    inside the image, so nothing leaks in from beyond the border and a constant stays constant."""
    if sigma <= 0:
        return np.eye(size)
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    weights = np.exp(-0.5 * (offsets / sigma) ** 2) * (np.abs(offsets) <= math.ceil(TRUNCATE * sigma))
    return weights / weights.sum(axis=1, keepdims=True)


@lru_cache(maxsize=8)
def spreading(spec: PatchSpec, sigma: float | None = None) -> np.ndarray:
    """W, (size, grid): a map is W @ grid @ W.T (patch means, then the Gaussian); sigma None = default_sigma."""
    s = default_sigma(spec) if sigma is None else sigma
    w = gaussian(spec.image_size, s) @ coverage(spec)
    w.setflags(write=False)  # cached and shared
    return w


def pixel_maps(grids: np.ndarray, spec: PatchSpec, sigma: float | None = None) -> np.ndarray:
    """(N, G, G) patch scores -> (N, S, S) float32 maps at the input resolution S = spec.image_size."""
    g = np.asarray(grids, dtype=np.float64)
    if g.ndim != 3 or g.shape[1:] != (spec.grid, spec.grid):
        raise ValueError(f"patch score grids must be N x {spec.grid} x {spec.grid}, got {g.shape}")
    w = spreading(spec, sigma)
    out = np.empty((len(g), spec.image_size, spec.image_size), dtype=np.float32)
    for i in range(0, len(g), _CHUNK):  # bounds the float64 intermediates, whatever N is
        out[i : i + _CHUNK] = w @ g[i : i + _CHUNK] @ w.T
    return out
