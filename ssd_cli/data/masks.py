"""Ground-truth masks for `ssd evaluate --masks`: found beside the anomalous images' own layout.

The mask of an anomalous image is at the same path under the masks folder as the image is under
the --anomalous folder it was listed from (a file given directly: its name at the top of the
folder), with any image extension, and optionally an `_mask` suffix (MVTec AD names its masks
000_mask.png). White (>= 128) is defect. A mask must have its image's size, so that fitting both
to the model's input by the same policy puts each defect pixel where the image's defect is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssd_cli.core.config import Resize
from ssd_cli.core.tiles import TileSpec
from ssd_cli.data.images import DECODE_ERRORS, decode_mask, decode_scaled, displayed_size, image_suffixes, list_images
from ssd_cli.errors import InputError

MASK_SUFFIX = "_mask"


def find_masks(roots: Sequence[Path], folder: Path) -> dict[Path, Path]:
    """image file -> its mask file, for the image files under `roots` (listed as scoring lists them)
    that have one under `folder`. Two candidate masks for one image are an InputError."""
    if not folder.is_dir():
        raise InputError(f"--masks: '{folder}' is not a folder")
    suffixes = image_suffixes()
    listings: dict[Path, dict[str, list[Path]]] = {}  # a folder of masks -> stem -> its image files

    def candidates(rel: Path) -> list[Path]:
        where = folder / rel.parent
        if where not in listings:
            by_stem: dict[str, list[Path]] = {}
            if where.is_dir():
                for p in sorted(where.iterdir()):
                    if p.suffix.lower() in suffixes and p.is_file():
                        by_stem.setdefault(p.stem, []).append(p)
            listings[where] = by_stem
        by_stem = listings[where]
        return by_stem.get(rel.stem, []) + by_stem.get(rel.stem + MASK_SUFFIX, [])

    found: dict[Path, Path] = {}
    for root in roots:
        files = list_images([root], what="anomalous").files
        for file in files:
            if file in found:
                continue  # reached from an earlier root, as list_images keeps the first
            rel = file.relative_to(root) if root.is_dir() else Path(file.name)
            masks = candidates(rel)
            if len(masks) > 1:
                raise InputError(f"--masks: {len(masks)} masks for '{file}': {', '.join(str(m) for m in masks)}; keep one")
            if masks:
                found[file] = masks[0]
    return found


def read_masks(pairs: dict[Path, Path], size: int, resize: Resize, tile: TileSpec | None = None) -> dict[Path, np.ndarray]:
    """image file -> its mask fitted to (size, size) bool by the image's resize policy; for a tiled
    model, scaled as its image is for the tiles (its own shape, nearest neighbour).

    A mask that cannot be read, or whose size differs from its image's, is an InputError naming
    it; an image that cannot be read is left to scoring, which skips it with a warning.
    """
    out: dict[Path, np.ndarray] = {}
    for image, mask in pairs.items():
        try:
            mask_wh = displayed_size(mask)
            fitted = decode_mask(mask, size, resize) if tile is None else decode_scaled(mask, tile.scaled, 1, mask=True)[0] >= 128
        except DECODE_ERRORS as exc:
            raise InputError(f"mask '{mask}' cannot be read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        try:
            image_wh = displayed_size(image)
        except DECODE_ERRORS:
            continue
        if mask_wh != image_wh:
            raise InputError(
                f"mask '{mask}' is {mask_wh[0]}x{mask_wh[1]} px but its image '{image}' is {image_wh[0]}x{image_wh[1]} px; a mask must have its image's size"
            )
        out[image] = fitted
    return out
