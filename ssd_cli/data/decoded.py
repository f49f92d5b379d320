"""The training images of every role, decoded at the network's input: in memory, in a disk cache
(data/cache.py) for sets larger than memory, or as tiles of large photos (data/tiles.py).

Rows are in role order (unlabeled first, then labeled normals, anomalies, outliers), so each role's
rows are one range. A role left with no readable image is bad input.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ssd_cli.core.config import Resize
from ssd_cli.core.imageset import ImageSet, Rows
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.core.roles import Role
from ssd_cli.core.tiles import TileSpec
from ssd_cli.data.cache import open_or_build
from ssd_cli.data.images import Skipped, load_images, name_skipped
from ssd_cli.data.tiles import load_tiles
from ssd_cli.errors import InputError

PRELOAD_BYTES = 1 << 30  # training input up to 1 GiB of float32 is preprocessed once; beyond, a batch at a time


@dataclass
class DecodedSet:
    """The training images as uint8 rows, and how many of them each role has."""

    rows: Rows
    counts: dict[Role, int]  # readable images (or a tiled model's tiles) per role, in row order
    skipped: list[Skipped]
    image_shape: tuple[int, int, int]
    images: torch.Tensor | None  # all rows, when they are in memory (None: a disk cache)
    photos: dict[Role, int] = field(default_factory=dict)  # a tiled model's readable images per role

    def chunks(self, role: Role, size: int = 4096) -> Iterator[torch.Tensor]:
        """One role's images, a chunk at a time (to fit the preprocessing without holding them twice)."""
        names = list(self.counts)
        start = sum(self.counts[r] for r in names[: names.index(role)])
        stop = start + self.counts[role]
        for a in range(start, stop, size):
            yield self.rows(torch.arange(a, min(a + size, stop)))

    def training_set(self, pre: Preprocessor, device: torch.device) -> tuple[ImageSet, torch.Tensor]:
        """x and the label vector y on the device; x is preprocessed once when it is in memory and
        small (PRELOAD_BYTES), else a mini-batch at a time."""
        y = torch.cat([torch.full((n,), role.label, dtype=torch.int8) for role, n in self.counts.items()]).to(device)
        n = sum(self.counts.values())
        if self.images is not None and self.images.numel() * 4 <= PRELOAD_BYTES:
            return ImageSet.preprocessed(self.images, pre, device), y
        return ImageSet(self.rows, n, self.image_shape, pre, device), y


def decode_images(
    roles: Mapping[Role, Sequence[Path]], size: int, channels: int, resize: Resize, *, cache: Path | None = None, workers: int | None = None
) -> DecodedSet:
    """Every role's images fitted to size x size, in memory, or into the disk cache under `cache`."""
    if cache is not None:
        every = [f for files in roles.values() for f in files]
        disk = open_or_build(every, size, channels, resize, cache, workers)
        kept, counts, start = torch.tensor(disk.kept, dtype=torch.int64), {}, 0
        for role, files in roles.items():  # rows are in file order, so each role's rows are a range
            counts[role] = int(((kept >= start) & (kept < start + len(files))).sum())
            start += len(files)
        return _checked(DecodedSet(disk.rows, counts, list(disk.skipped), (channels, size, size), images=None), roles)
    parts, counts, skipped = [], {}, []
    for role, files in roles.items():
        batch = load_images(files, size, channels, workers=workers, resize=resize)
        skipped += batch.skipped
        parts.append(batch.images)
        counts[role] = len(batch.paths)
    images = torch.cat(parts)
    return _checked(DecodedSet(lambda idx: images[idx], counts, skipped, (channels, size, size), images=images), roles)


def decode_tiles(
    roles: Mapping[Role, Sequence[Path]], tile: TileSpec, channels: int, per_image: int, seed: int, workers: int | None = None
) -> DecodedSet:
    """Each image's tiles, at most `per_image` of it (seeded), decoded one image at a time."""
    parts, counts, photos, skipped, first = [], {}, {}, [], 0
    for role, files in roles.items():
        got = load_tiles(files, tile, channels, per_image, seed, first, workers)
        first += len(files)
        skipped += got.skipped
        parts.append(got.tiles)
        counts[role], photos[role] = len(got.tiles), len(got.paths)
    images = torch.cat(parts)
    return _checked(DecodedSet(lambda idx: images[idx], counts, skipped, tuple(images.shape[1:]), images=images, photos=photos), roles)


def _checked(decoded: DecodedSet, roles: Mapping[Role, Sequence[Path]]) -> DecodedSet:
    for role, n in decoded.counts.items():
        if n == 0:
            files = set(roles[role])
            why = name_skipped([s for s in decoded.skipped if s.path in files])
            raise InputError(f"{role}: none of the {len(files)} image file(s) could be read: {why}")
    return decoded
