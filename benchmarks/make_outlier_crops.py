"""A folder of unrelated colour pictures for `ssd train --outliers`: random square crops of the photos
bundled with scikit-image (astronaut, cat, coffee, a rocket, the Hubble deep field, a stained
micrograph, a colour wheel), resized to one side. Nothing is downloaded; needs scikit-image, which
ssd does not depend on (`.venv/bin/pip install scikit-image`).

    .venv/bin/python benchmarks/make_outlier_crops.py --out /work/runs/outliers-skimage [--per-photo 52] [--size 32] [--seed 0]

docs/photos.md ("Outlier images") measures what such a folder does for small photos of objects.
The same seed gives the same files. ssd ships this script's default output (416 crops, seed 0) in
ssd_cli/data/outlier_photos (data/outliers.py); the first 208 measured were `--per-photo 26`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# Colour photos bundled with scikit-image (0.26 here; no download); chelsea and cat are the same photo.
SOURCES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "cat", "colorwheel")
MIN_CROP = 48  # px: a crop shows a recognisable part of its photo, never a few flat pixels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder to create (must not exist or be empty)")
    ap.add_argument("--per-photo", type=int, default=52, help=f"crops of each of the {len(SOURCES)} photos")
    ap.add_argument("--size", type=int, default=32, help="side of the saved crops, px")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        print(f"error: --out {args.out} is not empty", file=sys.stderr)
        return 2
    import skimage.data

    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for name in SOURCES:
        photo = np.asarray(getattr(skimage.data, name)())[..., :3]
        h, w, _ = photo.shape
        for i in range(args.per_photo):
            side = int(rng.integers(MIN_CROP, min(h, w) // 2))
            top, left = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
            crop = Image.fromarray(photo[top : top + side, left : left + side])
            crop.resize((args.size, args.size), Image.BILINEAR).save(args.out / f"{name}-{i:03d}.png")
    print(f"wrote {args.per_photo * len(SOURCES)} crops of {args.size} px to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
