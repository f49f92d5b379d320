"""Realistic evaluation folders made from real photos available offline, laid out as a user keeps them.

    .venv/bin/python benchmarks/make_photo_sets.py --out /work/runs/photo-sets [--data-root ../shared/datasets] [--seed 0]

Writes two sets under --out (same seed = byte-identical files):

colour-objects/   CIFAR-10 JPEG photos (32x32 colour), normal class 'automobile'.
  train/normal/     600 automobile train photos in nested subfolders, about a quarter re-saved as PNG
  train/bad/        20 labeled anomalies: train photos of the 9 other classes (2-3 each)
  test/normal/      200 automobile test photos
  test/anomalous/   200 test photos of the 9 other classes (22-23 each)

surface-defects/  128x128 grayscale crops of the real gravel texture of scikit-image (skimage.data.gravel,
                  512x512), at random positions with random flips and 90-degree rotations. Training crops
                  come only from the top 60% of the source (rows 0-306), test crops only from the bottom
                  40% (rows 307-511), so no test pixel was seen in training.
  train/normal/     500 normal crops
  train/bad/        20 defect crops from the training region (7 scratch, 7 foreign, 6 chip)
  test/normal/      100 normal crops
  test/anomalous/   100 defect crops (34 scratch, 33 foreign, 33 chip)

Defects are small and local (about 3-15 px across; scratches are 1-2.5 px wide and 15-50 px long):
  scratch   a thin bright or dark anti-aliased line segment of random angle
  foreign   a blob-shaped patch of another real texture (skimage grass or brick) blended in
  chip      an irregular blob that is either darkened (a pit, 5-15 px) or smoothed flat (worn-off grain, 8-15 px)

scikit-image is needed by this script only (a development tool, not a dependency of ssd_cli).
A README.txt and a manifest.json (every file, its source and its defect parameters) go into --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "datasets"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NORMAL_CLASS = "automobile"

CROP = 128
TRAIN_FRACTION = 0.6  # training crops from the top 60% of the gravel source, test crops from the rest
DEFECT_KINDS = ("scratch", "foreign", "chip")

# Nested layout of colour-objects/train/normal: (subfolder, number of photos, share saved as PNG)
NORMAL_LAYOUT = (
    ("lot_A", 200, 0.0),
    ("lot_B/day1", 150, 0.3),
    ("lot_B/day2", 150, 0.3),
    ("lot_C/old_camera", 100, 1.0),
)


# --------------------------------------------------------------------------------------------------
# (a) colour-objects


def _balanced_counts(total: int, n_classes: int, rng: np.random.Generator) -> list[int]:
    """total split over n_classes as evenly as possible; which classes get one more is drawn."""
    counts = np.full(n_classes, total // n_classes)
    counts[rng.choice(n_classes, total % n_classes, replace=False)] += 1
    return counts.tolist()


def _pick(folder: Path, n: int, rng: np.random.Generator) -> list[Path]:
    files = sorted(folder.glob("*.jpg"))
    if len(files) < n:
        raise SystemExit(f"{folder}: need {n} JPEG files, found {len(files)}")
    return [files[i] for i in sorted(rng.choice(len(files), n, replace=False))]


def _copy_photo(src: Path, dst_stem: Path, as_png: bool) -> Path:
    if as_png:
        dst = dst_stem.with_suffix(".png")
        with Image.open(src) as im:
            im.convert("RGB").save(dst, format="PNG")
    else:
        dst = dst_stem.with_suffix(".jpg")
        shutil.copyfile(src, dst)  # the original JPEG bytes
    return dst


def make_colour_objects(out: Path, cifar: Path, rng: np.random.Generator) -> list[dict]:
    manifest: list[dict] = []
    others = [c for c in CLASSES if c != NORMAL_CLASS]

    def record(dst: Path, src: Path, split: str, label: str) -> None:
        manifest.append({"file": dst.relative_to(out.parent).as_posix(), "source": src.relative_to(cifar).as_posix(), "class": src.parent.name, "split": split, "label": label})

    # train/normal: 600 automobile train photos over nested subfolders, some as PNG
    normals = _pick(cifar / "train" / NORMAL_CLASS, sum(n for _, n, _ in NORMAL_LAYOUT), rng)
    order = rng.permutation(len(normals))
    i = 0
    for sub, n, png_share in NORMAL_LAYOUT:
        folder = out / "train" / "normal" / sub
        folder.mkdir(parents=True)
        as_png = np.zeros(n, dtype=bool)
        as_png[rng.choice(n, int(round(n * png_share)), replace=False)] = True
        for j in range(n):
            src = normals[order[i]]
            dst = _copy_photo(src, folder / f"IMG_{i:04d}", bool(as_png[j]))
            record(dst, src, "train", "normal")
            i += 1

    # train/bad: 20 labeled anomalies from the other classes' train split
    folder = out / "train" / "bad"
    folder.mkdir(parents=True)
    k = 0
    for cls, n in zip(others, _balanced_counts(20, len(others), rng)):
        for src in _pick(cifar / "train" / cls, n, rng):
            record(_copy_photo(src, folder / f"bad_{k:03d}", False), src, "train", "anomalous")
            k += 1

    # test/normal and test/anomalous from the official test split
    folder = out / "test" / "normal"
    folder.mkdir(parents=True)
    for k, src in enumerate(_pick(cifar / "test" / NORMAL_CLASS, 200, rng)):
        record(_copy_photo(src, folder / f"ok_{k:03d}", False), src, "test", "normal")
    folder = out / "test" / "anomalous"
    folder.mkdir(parents=True)
    k = 0
    for cls, n in zip(others, _balanced_counts(200, len(others), rng)):
        for src in _pick(cifar / "test" / cls, n, rng):
            record(_copy_photo(src, folder / f"anomaly_{k:03d}", False), src, "test", "anomalous")
            k += 1
    return manifest


# --------------------------------------------------------------------------------------------------
# (b) surface-defects


def _crop(src: np.ndarray, rows: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A random CROP x CROP window whose rows lie in [rows[0], rows[1]), randomly flipped and rotated."""
    top = int(rng.integers(rows[0], rows[1] - CROP + 1))
    left = int(rng.integers(0, src.shape[1] - CROP + 1))
    img = src[top : top + CROP, left : left + CROP].astype(np.float64)
    flip, rot = bool(rng.integers(2)), int(rng.integers(4))
    if flip:
        img = img[:, ::-1]
    img = np.rot90(img, rot).copy()
    return img, {"top": top, "left": left, "flip": flip, "rot90": rot}


def _blob_mask(radius: float, rng: np.random.Generator, size: int = CROP, center: tuple[float, float] | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """Soft (anti-aliased) mask of an irregular blob: a circle whose radius wobbles with angle."""
    margin = radius * 1.5 + 4
    cy, cx = center or (float(rng.uniform(margin, size - margin)), float(rng.uniform(margin, size - margin)))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    theta, dist = np.arctan2(dy, dx), np.hypot(dy, dx)
    wobble = np.ones_like(theta)
    for k in (2, 3, 5):
        wobble += rng.uniform(0.05, 0.2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    edge = radius * wobble
    return np.clip(edge - dist + 0.5, 0.0, 1.0), (cy, cx)


def _scratch(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> dict:
    length = min(float(rng.uniform(15, 50)) * scale, CROP - 16.0)
    width = float(rng.uniform(1.0, 2.5)) * scale
    angle = float(rng.uniform(0, np.pi))
    bright = bool(rng.integers(2))
    value = float(rng.uniform(215, 250) if bright else rng.uniform(5, 35))
    opacity = float(rng.uniform(0.75, 1.0))
    half = length / 2
    dy, dx = np.sin(angle), np.cos(angle)
    my, mx = half * abs(dy) + 4, half * abs(dx) + 4  # the whole segment stays 4 px inside the crop
    cy, cx = float(rng.uniform(my, CROP - my)), float(rng.uniform(mx, CROP - mx))
    y0, x0, y1, x1 = cy - dy * half, cx - dx * half, cy + dy * half, cx + dx * half
    yy, xx = np.mgrid[0:CROP, 0:CROP].astype(np.float64)
    # distance of every pixel centre to the segment (y0,x0)-(y1,x1)
    vy, vx = y1 - y0, x1 - x0
    t = np.clip(((yy - y0) * vy + (xx - x0) * vx) / max(vy * vy + vx * vx, 1e-9), 0, 1)
    d = np.hypot(yy - (y0 + t * vy), xx - (x0 + t * vx))
    alpha = np.clip(width / 2 + 0.5 - d, 0.0, 1.0) * opacity
    img[:] = img * (1 - alpha) + value * alpha
    return {"kind": "scratch", "length": round(float(np.hypot(vy, vx)), 1), "width": round(width, 2), "angle_deg": round(np.degrees(angle), 1), "polarity": "bright" if bright else "dark", "value": round(value), "opacity": round(opacity, 2), "center": [round(cy, 1), round(cx, 1)]}


def _foreign(img: np.ndarray, rng: np.random.Generator, textures: dict[str, np.ndarray], scale: float = 1.0) -> dict:
    name = str(rng.choice(sorted(textures)))
    tex = textures[name]
    radius = float(rng.uniform(3.5, 7.5)) * scale  # 7-15 px across
    mask, (cy, cx) = _blob_mask(radius, rng)
    top, left = int(rng.integers(0, tex.shape[0] - CROP + 1)), int(rng.integers(0, tex.shape[1] - CROP + 1))
    patch = tex[top : top + CROP, left : left + CROP].astype(np.float64)
    opacity = float(rng.uniform(0.85, 1.0))
    alpha = mask * opacity
    img[:] = img * (1 - alpha) + patch * alpha
    return {"kind": "foreign", "texture": name, "diameter": round(2 * radius, 1), "opacity": round(opacity, 2), "center": [round(cy, 1), round(cx, 1)], "texture_window": [top, left]}


def _chip(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> dict:
    from scipy.ndimage import gaussian_filter

    dark = bool(rng.integers(2))
    # 5-15 px across when darkened; at least 8 px when smoothed (smaller smoothed spots are invisible)
    radius = float(rng.uniform(2.5, 7.5) if dark else rng.uniform(4.0, 7.5)) * scale
    mask, (cy, cx) = _blob_mask(radius, rng)
    if dark:
        factor = float(rng.uniform(0.2, 0.45))
        img[:] = img * (1 - mask) + img * factor * mask
        return {"kind": "chip", "style": "dark", "diameter": round(2 * radius, 1), "factor": round(factor, 2), "center": [round(cy, 1), round(cx, 1)]}
    smooth = gaussian_filter(img, sigma=radius)  # grain worn flat: the local mean, no texture
    shift = float(rng.uniform(-25, 25))
    img[:] = img * (1 - mask) + (smooth + shift) * mask
    return {"kind": "chip", "style": "smoothed", "diameter": round(2 * radius, 1), "shift": round(shift, 1), "center": [round(cy, 1), round(cx, 1)]}


def _save_gray(img: np.ndarray, path: Path) -> None:
    Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "L").save(path, format="PNG")


def make_surface_defects(out: Path, rng: np.random.Generator, scale: float = 1.0) -> list[dict]:
    import skimage.data

    gravel = skimage.data.gravel()
    textures = {"grass": skimage.data.grass(), "brick": skimage.data.brick()}
    split_row = int(round(gravel.shape[0] * TRAIN_FRACTION))
    regions = {"train": (0, split_row), "test": (split_row, gravel.shape[0])}
    manifest: list[dict] = []

    def write(split: str, folder: str, n: int, kinds: list[str | None], prefix: str) -> None:
        path = out / split / folder
        path.mkdir(parents=True)
        for k in range(n):
            img, where = _crop(gravel, regions[split], rng)
            kind = kinds[k]
            defect = None
            if kind == "scratch":
                defect = _scratch(img, rng, scale)
            elif kind == "foreign":
                defect = _foreign(img, rng, textures, scale)
            elif kind == "chip":
                defect = _chip(img, rng, scale)
            name = f"{prefix}_{k:03d}.png"
            _save_gray(img, path / name)
            manifest.append({"file": (path / name).relative_to(out.parent).as_posix(), "source": "skimage.data.gravel", "split": split, "label": "normal" if kind is None else "anomalous", "crop": where, "defect": defect})

    def kinds_for(n: int) -> list[str]:
        base = [DEFECT_KINDS[i % 3] for i in range(n)]  # 34/33/33 for 100, 7/7/6 for 20
        return [base[i] for i in rng.permutation(n)]

    write("train", "normal", 500, [None] * 500, "surface")
    write("train", "bad", 20, kinds_for(20), "reject")
    write("test", "normal", 100, [None] * 100, "ok")
    write("test", "anomalous", 100, kinds_for(100), "defect")
    return manifest


# --------------------------------------------------------------------------------------------------

README = """Evaluation folders for `ssd`, made by benchmarks/make_photo_sets.py (seed {seed}).
Command: {command}
{scale_note}Every file is listed in manifest.json with its source and, for defects, the exact defect parameters.

colour-objects/  real CIFAR-10 photos (32x32 RGB JPEG, quality about 75) from {cifar}
  Normal class: automobile. Anomalies: the 9 other CIFAR-10 classes.
  train/normal/     600 automobile photos drawn at random from the 5,000 train photos, spread over nested
                    subfolders lot_A/ (200 JPEG), lot_B/day1/ and lot_B/day2/ (150 each, 30% re-saved as
                    lossless PNG of the decoded JPEG), lot_C/old_camera/ (100, all PNG). JPEGs are the
                    original bytes.
  train/bad/        20 labeled anomalies: train photos of the other classes, 2-3 per class.
  test/normal/      200 automobile photos of the official test split.
  test/anomalous/   200 test-split photos of the other classes, 22-23 per class.

surface-defects/  128x128 grayscale PNG crops of the real gravel texture photo of scikit-image
                  (skimage.data.gravel(), 512x512, scikit-image {skversion}).
  Crops: random window position, random horizontal flip, random 90-degree rotation (0-3).
  Training crops (train/) come only from rows 0-{split_m1} of the source (the top 60%), test crops (test/)
  only from rows {split}-511, so test images are unseen texture (train crops overlap each other heavily:
  500 crops from a 307x512 region).
  train/normal/     500 normal crops.
  train/bad/        20 defect crops from the training region (7 scratch, 7 foreign, 6 chip).
  test/normal/      100 normal crops.
  test/anomalous/   100 defect crops (34 scratch, 33 foreign, 33 chip); one defect per image.
  Defects (one per image, placed fully inside the crop):
    scratch  a straight anti-aliased line segment, length 15-50 px, width 1-2.5 px, random angle,
             bright (grey level 215-250) or dark (5-35), opacity 0.75-1.
    foreign  an irregular blob (a circle of radius 3.5-7.5 px, i.e. 7-15 px across, whose radius wobbles
             with harmonics 2, 3, 5; 1-px soft edge) filled with the same window of another real
             texture, skimage.data.grass() or skimage.data.brick(), opacity 0.85-1.
    chip     an irregular blob, either darkened to 20-45% of its grey level (a pit, 5-15 px across) or
             replaced by a Gaussian-smoothed version of the crop (sigma = blob radius) shifted by
             -25..+25 grey levels (grain worn flat, 8-15 px across).
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder to create (must not exist or be empty)")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="holds cifar10-jpeg/")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--defect-scale", type=float, default=1.0, help="multiply every defect size (diameters, scratch width and length) by this; 1 = the small defects described above")
    args = ap.parse_args(argv)

    import skimage

    out: Path = args.out
    cifar = args.data_root / "cifar10-jpeg"
    if not (cifar / "train" / NORMAL_CLASS).is_dir():
        print(f"error: {cifar} has no train/{NORMAL_CLASS}/ (see the datasets README)", file=sys.stderr)
        return 3
    if out.exists() and any(out.iterdir()):
        print(f"error: {out} exists and is not empty", file=sys.stderr)
        return 5
    out.mkdir(parents=True, exist_ok=True)
    # One generator per set, so that changing one set never changes the other.
    seeds = np.random.SeedSequence(args.seed).spawn(2)
    manifest = make_colour_objects(out / "colour-objects", cifar, np.random.default_rng(seeds[0]))
    manifest += make_surface_defects(out / "surface-defects", np.random.default_rng(seeds[1]), args.defect_scale)
    split = int(round(512 * TRAIN_FRACTION))
    command = "python benchmarks/make_photo_sets.py --out DIR --data-root DATA_ROOT --seed " + str(args.seed)
    if args.defect_scale != 1.0:
        command += f" --defect-scale {args.defect_scale:g}"
    (out / "README.txt").write_text(
        README.format(scale_note=(f"DEFECT SCALE {args.defect_scale:g}: every defect size below (diameters, scratch width and length, the\nlength capped at 112 px) is multiplied by {args.defect_scale:g}; these are NOT the small defects of the default set.\n" if args.defect_scale != 1.0 else ""), seed=args.seed, command=command, cifar=cifar, skversion=skimage.__version__, split=split, split_m1=split - 1)
    )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    counts: dict[str, int] = {}
    for m in manifest:
        key = "/".join(m["file"].split("/")[:3])
        counts[key] = counts.get(key, 0) + 1
    for key, n in sorted(counts.items()):
        print(f"{n:5d}  {out / key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
