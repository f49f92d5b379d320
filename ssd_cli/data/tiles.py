"""Decoding images for tiled models (core/tiles.py): scaled, keeping their shape, one at a time.

A tiled model sees photos at native resolution, so one decoded image can take tens of megabytes.
Both paths here hold at most one decoded image per worker thread: scoring streams the scaled
images in order, a few ahead of the network; training cuts each image into its tiles as soon as
it is decoded and keeps only up to k of them, as uint8 copies, so the decoded image is freed at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssd_cli.core.tiles import TileSpec, cut_tiles, pick_tiles
from ssd_cli.data.images import DECODE_ERRORS, Skipped, decode_scaled, default_workers, unreadable


def iter_scaled(files: Sequence[Path], tile: TileSpec, channels: int, workers: int | None = None) -> Iterator[tuple[Path, np.ndarray | Skipped]]:
    """(file, its scaled image or why it was skipped), in file order; at most `workers` images are
    being decoded or waiting at any time, so memory is bounded by a few images however many files."""
    workers = workers or default_workers()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[Path, Future]] = deque()
        for path in files:
            pending.append((path, pool.submit(_try_scaled, path, tile, channels)))
            if len(pending) >= workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def _try_scaled(path: Path, tile: TileSpec, channels: int) -> np.ndarray | Skipped:
    try:
        return decode_scaled(path, tile.scaled, channels)
    except DECODE_ERRORS as exc:
        return unreadable(path, exc)


@dataclass
class TrainingTiles:
    """The tiles a set of training images contributes, and which images they came from."""

    tiles: torch.Tensor  # uint8 (M, C, T, T)
    paths: list[Path]  # the readable images
    counts: list[int]  # tiles of each readable image, in order
    skipped: list[Skipped]


def load_tiles(files: Sequence[Path], tile: TileSpec, channels: int, per_image: int, seed: int, first: int = 0, workers: int | None = None) -> TrainingTiles:
    """Every readable image's tiles, at most `per_image` of them chosen at random (pick_tiles, seeded
    by `seed` and the image's position `first + i`), so memory grows by at most per_image tiles per
    image however large the photos are."""
    parts: list[torch.Tensor] = []
    out = TrainingTiles(torch.zeros((0, channels, tile.tile_size, tile.tile_size), dtype=torch.uint8), [], [], [])
    for i, (path, image) in enumerate(iter_scaled(files, tile, channels, workers)):
        if isinstance(image, Skipped):
            out.skipped.append(image)
            continue
        n = len(tile.boxes(image.shape[1], image.shape[2]))
        parts.append(cut_tiles(image, tile, pick_tiles(n, per_image, seed, first + i).tolist()))
        out.paths.append(path)
        out.counts.append(len(parts[-1]))
    if parts:
        out.tiles = torch.cat(parts)
    return out
