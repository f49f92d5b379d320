"""A training set that is preprocessed a mini-batch at a time, from uint8 images in memory or on disk.

Training used to hold the whole set as preprocessed float32 on the device: four times the decoded
size, and all of it at once. An ImageSet keeps the uint8 images where they are (a tensor, or rows of
a disk cache read on demand) and makes float input only for the indices asked for, with the exact
per-image preprocessing of before, so the numbers are the same. Sets whose float input is small
(PRELOAD_BYTES) are preprocessed once instead, which is faster and gives the same numbers. It offers what the training loops
use of a tensor: len, indexing by a tensor of indices (a float batch on the device), subsets by
mask or slice, split into chunks, and .device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ssd_cli.core.preprocess import Preprocessor

Rows = Callable[[torch.Tensor], torch.Tensor]  # indices (CPU, int64) -> uint8 images (N, C, H, W)


@dataclass(frozen=True)
class ImageSet:
    rows: Rows  # where the uint8 images come from
    n_total: int  # images behind `rows`
    image_shape: tuple[int, int, int]  # C, H, W
    pre: Preprocessor | None  # None: the rows are already preprocessed
    device: torch.device
    index: torch.Tensor | None = None  # the subset of rows this set is (None: all, in order)

    @classmethod
    def of(cls, images: torch.Tensor, pre: Preprocessor, device: torch.device) -> ImageSet:
        """From uint8 images in memory."""
        return cls(lambda idx: images[idx], len(images), tuple(images.shape[1:]), pre, device)

    @classmethod
    def preprocessed(cls, images: torch.Tensor, pre: Preprocessor, device: torch.device) -> ImageSet:
        """All images preprocessed once, up front (float32 on the device): faster for sets that fit,
        since the small networks spend a noticeable share of each step on preprocessing."""
        x = pre(images.to(device)).contiguous(memory_format=torch.channels_last)
        return cls(lambda idx: x[idx.to(x.device)], len(x), tuple(images.shape[1:]), None, device)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.image_shape)

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return self.n_total if self.index is None else len(self.index)

    def _rows_of(self, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to("cpu", torch.int64)
        return idx if self.index is None else self.index[idx]

    def __getitem__(self, key: torch.Tensor | slice) -> torch.Tensor | ImageSet:
        """A tensor of indices gives the preprocessed float images (channels_last, on the device);
        a boolean mask or a slice gives the subset as another ImageSet."""
        if isinstance(key, slice):
            return self.subset(torch.arange(len(self))[key])
        if key.dtype == torch.bool:
            return self.subset(torch.nonzero(key.cpu()).flatten())
        images = self.rows(self._rows_of(key)).to(self.device, non_blocking=True)
        return images if self.pre is None else self.pre(images).contiguous(memory_format=torch.channels_last)

    def subset(self, positions: torch.Tensor) -> ImageSet:
        return ImageSet(self.rows, self.n_total, self.image_shape, self.pre, self.device, self._rows_of(positions))

    def split(self, size: int) -> Iterator[torch.Tensor]:
        """Consecutive float chunks of at most size images, in order."""
        for start in range(0, len(self), size):
            yield self[torch.arange(start, min(start + size, len(self)))]
