"""Finding and decoding image files into uint8 tensors of one fixed size and channel count.

Everything Pillow can read is accepted; grayscale, palette, alpha and 16-bit images are converted.
Images are used as they are displayed (EXIF orientation applied) and fitted to the square input by
a `Resize` policy. Large photos are decoded at reduced size (JPEG DCT scaling, integer reduction for
other formats) so that a 12-megapixel photo costs little more than a thumbnail. Decoding runs in a
thread pool (Pillow releases the GIL while decoding) and can be streamed in batches so that memory
stays bounded however large the folder is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, UnidentifiedImageError

from ssd_cli.core.config import Resize
from ssd_cli.data.limits import max_pixels
from ssd_cli.errors import InputError

class ImageTooLarge(ValueError):
    """A file that declares more pixels than the limit: decoding it could exhaust memory."""


def open_image(path: Path) -> Image.Image:
    """Image.open (which reads only the header), refusing an image over the pixel limit before any
    pixel is decoded: a small PNG can declare 50,000 x 50,000 pixels and take gigabytes."""
    im = Image.open(path)
    w, h = im.size
    if w * h > max_pixels():
        im.close()
        raise ImageTooLarge(f"{w}x{h} = {w * h / 1e6:.0f} megapixels, over the limit of {max_pixels() / 1e6:g} (ssd --max-image-pixels)")
    return im

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}

# What a decode can raise for a file that is not a readable image (truncated, corrupt, wrong format).
DECODE_ERRORS = (OSError, ValueError, UnidentifiedImageError, SyntaxError)

# Beyond this factor the final resample is preceded by an integer box reduction (Image.reduce): as
# good as a full filter over the whole image (Pillow's own measure) and several times faster.
REDUCING_GAP = 2.0


def image_suffixes() -> frozenset[str]:
    """Every file suffix Pillow can open on this installation."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass
class Skipped:
    """A file left out, and why, so the CLI can name it in a warning."""

    path: Path
    reason: str


def name_skipped(skipped: Sequence[Skipped], most: int = 3) -> str:
    """The first `most` skipped files with their reasons, then a count: for a warning, or for the
    error when nothing at all could be read, so that the user knows which files and why."""
    shown = "; ".join(f"{s.path} ({s.reason})" for s in skipped[:most])
    return shown + (f"; and {len(skipped) - most} more" if len(skipped) > most else "")


@dataclass
class ImageList:
    files: list[Path]
    skipped: list[Skipped] = field(default_factory=list)


def list_images(paths: Iterable[Path | str], *, what: str = "input") -> ImageList:
    """Expand files and folders (recursively, sorted) into image files. Everything left out is
    named with its reason: non-image files, links to nothing or to folders, FIFOs and other
    special files, unreadable subfolders.

    Raises InputError for a path that does not exist or when no image file is found at all.
    """
    suffixes = image_suffixes()
    files: list[Path] = []
    skipped: list[Skipped] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found, left_out = _walk(path)
            skipped += left_out
        elif path.is_file():
            found = [path]
        elif path.exists():
            skipped.append(Skipped(path, "not a regular file (a FIFO, socket or device)"))
            continue
        else:
            broken = " (a link to nothing)" if path.is_symlink() else ""
            raise InputError(f"{what}: '{path}' does not exist{broken}")
        for p in found:
            (files.append(p) if p.suffix.lower() in suffixes else skipped.append(Skipped(p, "not an image file")))
    if not files:
        names = ", ".join(str(p) for p in paths)
        raise InputError(f"{what}: no image files found in {names}")
    return ImageList(list(dict.fromkeys(files)), skipped)  # a file reached twice (a folder and its subfolder) counts once


def _walk(root: Path) -> tuple[list[Path], list[Skipped]]:
    """Files under root, recursively and sorted, leaving out hidden files and folders and not
    following links to folders (as Path.rglob, which also keeps a link loop from recursing forever);
    what is left out is returned with the reason, so the user is told. os.scandir knows most
    entries' types without a stat: twice as fast as rglob."""
    files: list[Path] = []
    skipped: list[Skipped] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    kind = _kind(entry)
                    if kind == "folder":
                        stack.append(Path(entry.path))
                    elif kind == "file":
                        files.append(Path(entry.path))
                    else:
                        skipped.append(Skipped(Path(entry.path), kind))
        except OSError as exc:
            skipped.append(Skipped(folder, f"unreadable folder ({exc.strerror or exc})"))
    return sorted(files), skipped


def _kind(entry: os.DirEntry) -> str:
    """'folder', 'file', or why the entry is left out. A link loop makes is_file() raise (ELOOP)
    instead of returning False, so every test here is guarded."""
    try:
        if entry.is_dir(follow_symlinks=False):
            return "folder"
        if entry.is_file():
            return "file"
        if entry.is_symlink() and os.path.exists(entry.path):  # exists() is False for broken and looping links
            return "a link to a folder (not followed)" if entry.is_dir() else "a link to a special file"
    except OSError:
        pass
    if entry.is_symlink():
        return "a link to nothing (broken or looping link)"
    return "not a regular file (a FIFO, socket or device)"


def decode_image(path: Path, size: int, channels: int, resize: Resize = Resize.SQUASH) -> np.ndarray:
    """Decode one image, as displayed, to a (channels, size, size) uint8 array fitted by `resize`.

    Raises one of DECODE_ERRORS if the file is unreadable.
    """
    with open_image(path) as im:
        # JPEG: libjpeg decodes at 1/2, 1/4 or 1/8 scale, as small as the policy allows (None elsewhere).
        drafted = im.draft(_mode(channels), _DRAFT_REQUEST[resize](im.size, size))
        im.load()
        # A scaled JPEG's last row/column is partly padding: fit only the original image's extent.
        return _fit(im, drafted[1] if drafted else (0, 0, *im.size), size, channels, resize)


def fit_image(im: Image.Image, size: int, channels: int, resize: Resize = Resize.SQUASH) -> np.ndarray:
    """An image already in memory, fitted exactly as decode_image fits a file (the Python API)."""
    return _fit(im, (0, 0, *im.size), size, channels, resize)


Scaling = Callable[[tuple[int, int]], tuple[int, int]]  # (width, height) as displayed -> the size wanted


def decode_scaled(path: Path, scaling: Scaling, channels: int, *, mask: bool = False) -> np.ndarray:
    """Decode one image, as displayed, to (channels, h, w) uint8 at the size `scaling` gives for its
    displayed size (tiled models: data/tiles.py), keeping its shape instead of fitting a square.

    JPEGs are decoded at reduced scale when that still covers the size wanted. mask=True reads a
    ground-truth mask: one channel, nearest neighbour and no JPEG reduction, so no defect pixel is
    averaged into grey. Raises one of DECODE_ERRORS if the file is unreadable.
    """
    with open_image(path) as im:
        turned = im.getexif().get(ExifTags.Base.Orientation, 1) in _SWAPS_SIDES
        w, h = scaling((im.height, im.width) if turned else im.size)
        stored = (h, w) if turned else (w, h)
        drafted = None if mask else im.draft(_mode(channels), stored)
        im.load()
        resample = Image.Resampling.NEAREST if mask else Image.Resampling.BILINEAR
        return _scaled(im, drafted[1] if drafted else (0, 0, *im.size), stored, channels, resample)


def fit_scaled(im: Image.Image, scaling: Scaling, channels: int) -> np.ndarray:
    """An image already in memory, scaled exactly as decode_scaled scales a file (the Python API)."""
    turned = im.getexif().get(ExifTags.Base.Orientation, 1) in _SWAPS_SIDES
    w, h = scaling((im.height, im.width) if turned else im.size)
    return _scaled(im, (0, 0, *im.size), (h, w) if turned else (w, h), channels, Image.Resampling.BILINEAR)


def decode_mask(path: Path, size: int, resize: Resize) -> np.ndarray:
    """A ground-truth mask (white, >= 128, is defect) fitted as its image is, to (size, size) bool.

    Nearest-neighbour resampling, so a defect pixel is never averaged into a grey that falls under
    128; no JPEG draft, since a mask's blocks must not be averaged either. Raises DECODE_ERRORS.
    """
    with open_image(path) as im:
        im.load()
        return _fit(im, (0, 0, *im.size), size, 1, resize, Image.Resampling.NEAREST)[0] >= 128


def displayed_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as displayed (EXIF orientation applied), read from its header."""
    with open_image(path) as im:
        w, h = im.size
        return (h, w) if im.getexif().get(ExifTags.Base.Orientation, 1) in _SWAPS_SIDES else (w, h)


def placement(wh: tuple[int, int], size: int, resize: Resize) -> tuple[Box, tuple[int, int, int, int]]:
    """Where an image as displayed (width, height) goes in the size x size input under `resize`:
    the box of the image that is used, and the box of the input it fills (pad: inside the bars).

    Each policy's boxes are centred, so they are the same for the stored and the displayed image.
    """
    out, box = _GEOMETRY[resize]((0, 0, *wh), size)
    x0, y0 = (size - out[0]) // 2, (size - out[1]) // 2  # as _centred pastes it
    return box, (x0, y0, x0 + out[0], y0 + out[1])


def unfit_map(values: np.ndarray, wh: tuple[int, int], resize: Resize) -> np.ndarray:
    """A (size, size) map over the model's input back onto the image as displayed: (height, width)
    float32, bilinear, undoing `resize` (squash: stretched back; pad: the bars dropped; crop: the
    centre square only). Pixels the model never saw (crop's margins) are NaN.
    """
    size = values.shape[0]
    (left, top, right, bottom), (x0, y0, x1, y1) = placement(wh, size, resize)
    w, h = round(right - left), round(bottom - top)
    out = np.full((wh[1], wh[0]), np.nan, dtype=np.float32)
    # crop's half-pixel offset (an odd difference of sides) goes down, as _crop rounds whole pixels
    out[int(top) : int(top) + h, int(left) : int(left) + w] = stretch_map(values[y0:y1, x0:x1], (w, h))
    return out


def stretch_map(values: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    """An (h, w) map resized bilinearly to (height, width) = wh reversed, float32 (unchanged if it fits)."""
    if values.shape == (wh[1], wh[0]):
        return np.asarray(values, dtype=np.float32)
    seen = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32), "F")
    return np.asarray(seen.resize(wh, Image.Resampling.BILINEAR))


def _mode(channels: int) -> str:
    return "L" if channels == 1 else "RGB"


def _fit(
    im: Image.Image, region: Box, size: int, channels: int, resize: Resize, resample: Image.Resampling = Image.Resampling.BILINEAR
) -> np.ndarray:
    orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    content = _resample(_converted(im, channels), *_GEOMETRY[resize](region, size), resample)
    # Each policy's region is centred, so it is the same in the stored and the displayed image:
    # the small result is turned (EXIF orientation) instead of the large input.
    return _array(_centred(_displayed(content, orientation), size), channels)


def _scaled(im: Image.Image, region: Box, out: tuple[int, int], channels: int, resample: Image.Resampling) -> np.ndarray:
    """The whole region of im resampled to `out` (stored orientation), then turned as displayed."""
    orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    return _array(_displayed(_resample(_converted(im, channels), out, region, resample), orientation), channels)


def _converted(im: Image.Image, channels: int) -> Image.Image:
    target = _mode(channels)
    if im.mode in _SIXTEEN_BIT_MODES or im.mode == "F":
        im = _to_eight_bit(im)
    return im if im.mode == target else im.convert(target)


def _displayed(content: Image.Image, orientation: int) -> Image.Image:
    method = _EXIF_TRANSPOSE.get(orientation)
    return content if method is None else content.transpose(method)


def _array(im: Image.Image, channels: int) -> np.ndarray:
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


Box = tuple[float, float, float, float]

# EXIF orientations that turn the image by 90 degrees, so its displayed width is its stored height.
_SWAPS_SIDES = frozenset({5, 6, 7, 8})

# The EXIF orientation tag -> the transposition that shows the image as displayed (ImageOps.exif_transpose's table).
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _both_sides(wh: tuple[int, int], size: int) -> tuple[int, int]:
    return size, size


def _long_side(wh: tuple[int, int], size: int) -> tuple[int, int]:
    # Pillow's draft keeps both sides >= the request; 1 leaves the short side free.
    return (size, 1) if wh[0] >= wh[1] else (1, size)


# The smallest decoded size each policy can use without upsampling: squash needs both sides >= size,
# crop the short side (the same thing), pad only the long side.
_DRAFT_REQUEST: dict[Resize, Callable[[tuple[int, int], int], tuple[int, int]]] = {
    Resize.SQUASH: _both_sides,
    Resize.CROP: _both_sides,
    Resize.PAD: _long_side,
}


def _squash(region: Box, size: int) -> tuple[tuple[int, int], Box]:
    return (size, size), region


def _crop(region: Box, size: int) -> tuple[tuple[int, int], Box]:
    x0, y0, x1, y1 = region
    side = min(x1 - x0, y1 - y0)
    left, top = x0 + (x1 - x0 - side) / 2, y0 + (y1 - y0 - side) / 2
    if side == size:  # no scaling: whole pixels, no half-pixel blur
        left, top = float(int(left)), float(int(top))
    return (size, size), (left, top, left + side, top + side)


def _pad(region: Box, size: int) -> tuple[tuple[int, int], Box]:
    w, h = region[2] - region[0], region[3] - region[1]
    scale = size / max(w, h)
    return (max(1, round(w * scale)), max(1, round(h * scale))), region


# Per policy: which box of the decoded image becomes an output of which size (pad: the long side is
# `size` and _centred adds the black bars afterwards).
_GEOMETRY: dict[Resize, Callable[[Box, int], tuple[tuple[int, int], Box]]] = {
    Resize.SQUASH: _squash,
    Resize.CROP: _crop,
    Resize.PAD: _pad,
}


def _resample(im: Image.Image, out: tuple[int, int], box: Box, resample: Image.Resampling) -> Image.Image:
    """box of im to an out-sized image; an integral box of the same size is copied exactly."""
    if (box[2] - box[0], box[3] - box[1]) == out and all(float(v).is_integer() for v in box):
        return im if tuple(box) == (0, 0, *im.size) else im.crop(tuple(int(v) for v in box))
    return im.resize(out, resample, box=box, reducing_gap=REDUCING_GAP)  # Pillow does no reducing step for NEAREST


def _centred(content: Image.Image, size: int) -> Image.Image:
    """content in the middle of a black size x size square (unchanged if it already is one)."""
    if content.size == (size, size):
        return content
    canvas = Image.new(content.mode, (size, size), 0)
    canvas.paste(content, ((size - content.width) // 2, (size - content.height) // 2))
    return canvas


def _to_eight_bit(im: Image.Image) -> Image.Image:
    """Scale 16-bit and float images to 8 bits instead of letting Pillow clip them."""
    arr = np.asarray(im, dtype=np.float64)
    top = 1.0 if im.mode == "F" and arr.max(initial=0) <= 1.0 else (255.0 if arr.max(initial=0) <= 255 else 65535.0)
    return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def unreadable(path: Path, exc: BaseException) -> Skipped:
    """The Skipped entry for a file whose decode raised exc (one line, whatever the message)."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return Skipped(path, f"too large ({reason})" if isinstance(exc, ImageTooLarge) else f"unreadable image ({reason})")


def _try_decode(path: Path, size: int, channels: int, resize: Resize) -> np.ndarray | Skipped:
    try:
        return decode_image(path, size, channels, resize)
    except DECODE_ERRORS as exc:
        return unreadable(path, exc)


def default_workers() -> int:
    """Half the cores decode, the other half run the network (measured best for scoring on 2 cores)."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


@dataclass
class ImageBatch:
    images: torch.Tensor  # uint8, (N, C, H, W)
    paths: list[Path]
    skipped: list[Skipped]


def _decode_many(paths: Sequence[Path], size: int, channels: int, resize: Resize) -> list[np.ndarray | Skipped]:
    return [_try_decode(p, size, channels, resize) for p in paths]


def iter_image_batches(
    files: Sequence[Path],
    size: int,
    channels: int,
    batch_size: int = 1024,
    workers: int | None = None,
    *,
    resize: Resize = Resize.SQUASH,
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
            return [pool.submit(_decode_many, batch[i : i + step], size, channels, resize) for i in range(0, len(batch), step)]

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


def load_images(
    files: Sequence[Path], size: int, channels: int, workers: int | None = None, *, resize: Resize = Resize.SQUASH
) -> ImageBatch:
    """Decode all files into one tensor (for training sets, which are held in memory)."""
    parts = list(iter_image_batches(files, size, channels, batch_size=4096, workers=workers, resize=resize))
    return ImageBatch(
        torch.cat([b.images for b in parts]) if parts else torch.empty((0, channels, size, size), dtype=torch.uint8),
        [p for b in parts for p in b.paths],
        [s for b in parts for s in b.skipped],
    )


def load_folder(
    paths: Iterable[Path | str], size: int, channels: int, *, what: str, resize: Resize = Resize.SQUASH
) -> ImageBatch:
    """List and decode a training folder; refuses a folder where no image could be read."""
    listing = list_images(paths, what=what)
    batch = load_images(listing.files, size, channels, resize=resize)
    batch.skipped[:0] = listing.skipped
    if len(batch.paths) == 0:
        raise InputError(f"{what}: none of the {len(listing.files)} image files could be read: {name_skipped(batch.skipped[len(listing.skipped):])}")
    return batch
