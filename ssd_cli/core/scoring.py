"""Scoring with a saved model: the exact preprocessing and network of training, in inference mode.

The engine under the public `Detector` (api.py), which lists folders, applies thresholds and
reports progress; a Scorer only turns images, or already listed image files, into scores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ssd_cli.data.images import ImageBatch, iter_image_batches
from ssd_cli.io.modelfile import SavedModel
from ssd_cli.core.objectives import squared_distances
from ssd_cli.core.patches import image_scores, patch_distances
from ssd_cli.core.embedding import eval_batch_size


@dataclass
class ScoredBatch:
    batch: ImageBatch
    scores: torch.Tensor  # float32 on the CPU, one per readable image
    maps: torch.Tensor | None = None  # patch-level models: (N, G, G) patch scores, the anomaly map


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
            return image_scores(self.score_maps(images))
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

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        x = self.saved.preprocessor(images.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last)

    def score_files(self, files: Sequence[Path], batch_size: int = 512, workers: int | None = None) -> Iterator[ScoredBatch]:
        """Stream image files (not folders: list them with images.list_images) through decode and
        network; the next batch decodes while this one is scored."""
        saved = self.saved
        for batch in iter_image_batches(files, saved.input_size, saved.spec.channels, batch_size, workers, resize=saved.resize):
            if saved.patch is None:
                yield ScoredBatch(batch, self.score(batch.images))
            else:
                maps = self.score_maps(batch.images)
                yield ScoredBatch(batch, image_scores(maps), maps)
