"""Finding and decoding image files into uint8 tensors of one fixed size and channel count.

Everything Pillow can read is accepted; grayscale, palette, alpha and 16-bit images are converted.
Decoding runs in a thread pool (Pillow releases the GIL while decoding) and can be streamed in
batches so that memory stays bounded however large the folder is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import InputError

Image.MAX_IMAGE_PIXELS = None  # large scans are legitimate input; we resize them anyway

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def image_suffixes() -> frozenset[str]:
    """Every file suffix Pillow can open on this installation."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass
class Skipped:
    """A file left out, and why, so the CLI can name it in a warning."""

    path: Path
    reason: str


@dataclass
class ImageList:
    files: list[Path]
    skipped: list[Skipped] = field(default_factory=list)


def list_images(paths: Iterable[Path | str], *, what: str = "input") -> ImageList:
    """Expand files and folders (recursively, sorted) into image files; non-image files are skipped.

    Raises InputError for a path that does not exist or when no image file is found at all.
    """
    suffixes = image_suffixes()
    files: list[Path] = []
    skipped: list[Skipped] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
        elif path.is_file():
            found = [path]
        else:
            raise InputError(f"{what}: '{path}' does not exist")
        for p in found:
            (files.append(p) if p.suffix.lower() in suffixes else skipped.append(Skipped(p, "not an image file")))
    if not files:
        names = ", ".join(str(p) for p in paths)
        raise InputError(f"{what}: no image files found in {names}")
    return ImageList(files, skipped)


def _hidden(p: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in p.relative_to(root).parts)


def decode_image(path: Path, size: int, channels: int) -> np.ndarray:
    """Decode one image to a (channels, size, size) uint8 array; raises OSError/ValueError if unreadable."""
    with Image.open(path) as im:
        target = "L" if channels == 1 else "RGB"
        if im.format == "JPEG":
            im.draft(target, (size, size))  # let libjpeg downscale large photos while decoding
        im.load()
        if im.mode in _SIXTEEN_BIT_MODES or im.mode == "F":
            im = _to_eight_bit(im)
        if im.mode != target:
            im = im.convert(target)
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _to_eight_bit(im: Image.Image) -> Image.Image:
    """Scale 16-bit and float images to 8 bits instead of letting Pillow clip them."""
    arr = np.asarray(im, dtype=np.float64)
    top = 1.0 if im.mode == "F" and arr.max(initial=0) <= 1.0 else (255.0 if arr.max(initial=0) <= 255 else 65535.0)
    return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def _try_decode(path: Path, size: int, channels: int) -> np.ndarray | Skipped:
    try:
        return decode_image(path, size, channels)
    except (OSError, ValueError, UnidentifiedImageError, SyntaxError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Skipped(path, f"unreadable image ({reason})")


def default_workers() -> int:
    """Half the cores decode, the other half run the network (measured best for scoring on 2 cores)."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


@dataclass
class ImageBatch:
    images: torch.Tensor  # uint8, (N, C, H, W)
    paths: list[Path]
    skipped: list[Skipped]


def _decode_many(paths: Sequence[Path], size: int, channels: int) -> list[np.ndarray | Skipped]:
    return [_try_decode(p, size, channels) for p in paths]


def iter_image_batches(
    files: Sequence[Path], size: int, channels: int, batch_size: int = 1024, workers: int | None = None
) -> Iterator[ImageBatch]:
    """Decode files in batches, one batch ahead in the pool, so memory is bounded by ~2 batches.

    Each batch is cut into one slice per worker and each slice is one pool task: a task per file
    costs more in scheduling than decoding a small PNG does.
    """
    workers = workers or default_workers()
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(batch: Sequence[Path]) -> list:
            step = -(-len(batch) // workers)
            return [pool.submit(_decode_many, batch[i : i + step], size, channels) for i in range(0, len(batch), step)]

        pending = [submit(batches[0])] if batches else []
        for i, batch in enumerate(batches):
            if i + 1 < len(batches):
                pending.append(submit(batches[i + 1]))
            results = [r for future in pending.pop(0) for r in future.result()]
            ok = [(p, r) for p, r in zip(batch, results) if not isinstance(r, Skipped)]
            skipped = [r for r in results if isinstance(r, Skipped)]
            images = (
                torch.from_numpy(np.stack([r for _, r in ok]))
                if ok
                else torch.empty((0, channels, size, size), dtype=torch.uint8)
            )
            yield ImageBatch(images, [p for p, _ in ok], skipped)


def load_images(files: Sequence[Path], size: int, channels: int, workers: int | None = None) -> ImageBatch:
    """Decode all files into one tensor (for training sets, which are held in memory)."""
    parts = list(iter_image_batches(files, size, channels, batch_size=4096, workers=workers))
    return ImageBatch(
        torch.cat([b.images for b in parts]) if parts else torch.empty((0, channels, size, size), dtype=torch.uint8),
        [p for b in parts for p in b.paths],
        [s for b in parts for s in b.skipped],
    )


def load_folder(paths: Iterable[Path | str], size: int, channels: int, *, what: str) -> ImageBatch:
    """List and decode a training folder; refuses a folder where no image could be read."""
    listing = list_images(paths, what=what)
    batch = load_images(listing.files, size, channels)
    batch.skipped[:0] = listing.skipped
    if len(batch.paths) == 0:
        raise InputError(f"{what}: none of the {len(listing.files)} image files could be read")
    return batch
