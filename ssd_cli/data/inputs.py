"""What the Python API accepts as images: paths (files and folders), PIL images, arrays and tensors.

Paths are listed as the CLI lists them (folders recursively, non-image files skipped). In-memory
images are fitted to the model's input by the same code that fits decoded files, so a PNG on disk
and the same pixels in an array get the same score. Arrays are channels-last, as Pillow and numpy
give them: HxW, HxWxC, or a batch NxHxW / NxHxWxC (a 3-d array whose last axis is 1, 3 or 4 is one
image); uint8 as they are, bool as 0/255, floats must lie in [0, 1]. A torch uint8 tensor of shape
(N, C, H, W) is taken as images already at the model's input.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from ssd_cli.errors import InputError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]
Images = Union[ImageLike, Sequence[ImageLike]]


@dataclass(frozen=True)
class Segment:
    """A run of inputs of one kind, in input order: paths to list and decode, or in-memory images."""

    paths: tuple[Path, ...] = ()
    images: tuple[Image.Image, ...] = ()
    tensor: torch.Tensor | None = None  # (N, C, H, W) uint8, already at the model's input


def segments(x: Images) -> list[Segment]:
    """Split the inputs into runs of paths and runs of in-memory images, keeping their order."""
    out: list[Segment] = []
    for item in _items(x):
        if isinstance(item, (str, os.PathLike)):
            if out and out[-1].paths:
                out[-1] = Segment(paths=out[-1].paths + (Path(item),))
            else:
                out.append(Segment(paths=(Path(item),)))
        elif isinstance(item, torch.Tensor):
            out.append(Segment(tensor=_tensor(item)))
        else:
            images = tuple(_pil(item))
            if out and out[-1].images:
                out[-1] = Segment(images=out[-1].images + images)
            else:
                out.append(Segment(images=images))
    if not out:
        raise InputError("no images given")
    return out


def _items(x: Any) -> Iterable[Any]:
    """One input, or a list/tuple of them (an array is one input, possibly a batch)."""
    if isinstance(x, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
        return [x]
    if isinstance(x, (list, tuple)):
        return x
    raise InputError(f"cannot read images from a {type(x).__name__}: give paths, folders, PIL images or arrays")


def _pil(item: Any) -> list[Image.Image]:
    if isinstance(item, Image.Image):
        return [item]
    if isinstance(item, np.ndarray):
        return [Image.fromarray(a) for a in _uint8_images(item)]
    raise InputError(f"cannot read an image from a {type(item).__name__}: give paths, folders, PIL images or arrays")


def _uint8_images(a: np.ndarray) -> list[np.ndarray]:
    """An array as a list of HxW or HxWxC uint8 images."""
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 3, 4)):
        batch = a[None]
    elif a.ndim in (3, 4):
        batch = a
    else:
        raise InputError(f"an image array must be HxW, HxWxC, NxHxW or NxHxWxC, got shape {a.shape}")
    if batch.ndim == 4 and batch.shape[-1] not in (1, 3, 4):
        raise InputError(f"image arrays are channels-last with 1, 3 or 4 channels, got shape {a.shape}")
    if batch.dtype == np.bool_:
        batch = batch.astype(np.uint8) * 255
    elif np.issubdtype(batch.dtype, np.floating):
        if not np.isfinite(batch).all() or batch.min(initial=0) < 0 or batch.max(initial=0) > 1:
            raise InputError("float image arrays must hold finite values in [0, 1]")
        batch = np.rint(batch * 255).astype(np.uint8)
    elif np.issubdtype(batch.dtype, np.integer):
        if batch.min(initial=0) < 0 or batch.max(initial=0) > 255:
            raise InputError(f"integer image arrays must hold values in 0..255, got {batch.dtype} from {batch.min()} to {batch.max()}")
        batch = batch.astype(np.uint8)
    else:
        raise InputError(f"cannot read images from an array of {batch.dtype}")
    if batch.ndim == 4 and batch.shape[-1] == 1:
        batch = batch[..., 0]
    return list(batch)


def _tensor(t: torch.Tensor) -> torch.Tensor:
    if t.dtype != torch.uint8 or t.ndim != 4:
        raise InputError(f"a tensor must be uint8 images (N, C, H, W) at the model's input, got {t.dtype} {tuple(t.shape)}; give numpy arrays or PIL images to have them resized")
    return t


def save_pngs(images: Sequence[Image.Image], folder: Path, start: int = 0) -> list[Path]:
    """In-memory training images as lossless PNG files, so that training follows the one path that
    folders take (scan, choice of network, decode)."""
    paths = []
    for i, im in enumerate(images, start):
        path = folder / f"image-{i:07d}.png"
        im.save(path)
        paths.append(path)
    return paths
