"""Scoring image files: each batch decoded (data/images.py, data/tiles.py) while the last is scored.

A core Scorer turns decoded images into scores; this streams a list of files through it, so the
method itself never touches a file. `Detector` (api.py) and the engine's scoring of a tiled model's
training images both go through here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ssd_cli.core.patches import image_scores
from ssd_cli.core.scoring import Grids, Scorer
from ssd_cli.data.images import Skipped, iter_image_batches
from ssd_cli.data.tiles import iter_scaled


@dataclass
class ScoredBatch:
    paths: list[Path]  # the readable images
    skipped: list[Skipped]
    scores: torch.Tensor  # float32 on the CPU, one per readable image
    maps: Grids | None = None


def score_files(scorer: Scorer, files: Sequence[Path], batch_size: int = 512, workers: int | None = None) -> Iterator[ScoredBatch]:
    """Stream image files (not folders: list them with images.list_images) through decode and
    network; the next batch decodes while this one is scored. A tiled model's files come one
    image at a time (data/tiles.py), each scored over all its tiles."""
    saved = scorer.saved
    if saved.tile is not None:
        for path, image in iter_scaled(files, saved.tile, saved.spec.channels, workers):
            if isinstance(image, Skipped):
                yield ScoredBatch([], [image], torch.zeros(0), [])
            else:
                t = scorer.score_tiled(image)
                yield ScoredBatch([path], [], torch.tensor([t.score(saved.patch.top_k)]), [t])
        return
    for batch in iter_image_batches(files, saved.input_size, saved.spec.channels, batch_size, workers, resize=saved.resize):
        if saved.patch is None:
            yield ScoredBatch(batch.paths, batch.skipped, scorer.score(batch.images))
        else:
            maps = scorer.score_maps(batch.images)
            yield ScoredBatch(batch.paths, batch.skipped, image_scores(maps, saved.patch.top_k), maps.numpy())
