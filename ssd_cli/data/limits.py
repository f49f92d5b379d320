"""The one limit on the pixels an image file may declare (`ssd --max-image-pixels`), checked from
the header before any decode (data/images.open_image). Apart from the rest of data/ so that the
command line can set it without importing torch."""

from __future__ import annotations

from PIL import Image

# Pillow's own bomb check warns or fails at sizes that depend on its version; ours is one
# documented limit instead.
Image.MAX_IMAGE_PIXELS = None
DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels: beyond any camera photo, far below a decode that exhausts memory
_limit = {"pixels": DEFAULT_MAX_PIXELS}


def set_max_pixels(pixels: int) -> None:
    """Images declaring more pixels than this are skipped (`ssd --max-image-pixels`)."""
    if pixels < 1:
        raise ValueError(f"the pixel limit must be at least 1, got {pixels}")
    _limit["pixels"] = int(pixels)


def max_pixels() -> int:
    return _limit["pixels"]
