"""Realistic evaluation folders made from real photos available offline, laid out as a user keeps them.

    .venv/bin/python benchmarks/make_photo_sets.py --out /work/runs/photo-sets --sets colour-objects,surface-defects [--data-root ../shared/datasets]
    .venv/bin/python benchmarks/make_photo_sets.py --out /work/runs/photo-sets-x3 --sets surface-defects --defect-scale 3
    .venv/bin/python benchmarks/make_photo_sets.py --out /work/runs/photo-sets-new --sets grass-blemishes,brick-cracks,histology-defects [--contact-sheets /work/runs]
    .venv/bin/python benchmarks/make_photo_sets.py --out /work/runs/photo-sets-new2 --sets moon-defects [--contact-sheets /work/runs]

Writes the sets named by --sets (default all) under --out; the same seed gives byte-identical files, and
each set has its own random stream, so a set's files do not depend on which other sets are written.
Every set has train/normal, train/bad (20 labeled anomalies), test/normal, test/anomalous:

colour-objects/     CIFAR-10 JPEG photos (32x32 colour), normal class 'automobile', anomalies the 9 other
                    classes (600 / 20 / 200 / 200, train/normal in nested subfolders, some re-saved as PNG).
surface-defects/    128x128 grayscale crops of skimage.data.gravel with small scratch / foreign / chip defects.
grass-blemishes/    128x128 grayscale crops of skimage.data.grass with stain / smudge / fill / warp defects.
brick-cracks/       128x128 grayscale crops of skimage.data.brick with crack / stain / dead-columns defects.
histology-defects/  128x128 colour crops of skimage.data.immunohistochemistry with stain / smudge / tear defects.
moon-defects/       128x128 grayscale crops of skimage.data.moon with fibre / grain / Newton-rings / droplet defects.

The crop sets have 500 / 20 / 100 / 100 images: training crops from the top 60% of the source photo, test
crops from the rest (no test pixel seen in training), random flips and 90-degree rotations, one local
defect per anomalous crop (about 5-30 px on 128 px). For every anomalous crop a mask PNG (255 = the pixels
the defect drawing touched) lies at the same relative path under train/masks/ or test/masks/; the masks
come from the drawing itself, and generation fails if a saved pixel outside the mask differs from the
clean crop. The kinds of the newer sets (all but surface-defects) are deliberately none of the kinds ssd's
own synthetic anomalies make (pasted patches, random-colour blobs, blended textures; moon-defects also no
stains or blurs), so they measure how training generalises to defects it never saw. README.txt (written beside the sets) describes every kind and its
parameter ranges; manifest.json lists every file with its source crop, defect parameters and mask.

scikit-image is needed by this script only (a development tool, not a dependency of ssd_cli).
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
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


def _blob_field(radius: float, rng: np.random.Generator, size: int = CROP, center: tuple[float, float] | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """Distance in px inside the edge of an irregular blob (negative outside): a circle whose radius wobbles
    with angle. Hard and soft blob weights are both made from it, so their masks are exact."""
    margin = radius * 1.5 + 4
    cy, cx = center or (float(rng.uniform(margin, size - margin)), float(rng.uniform(margin, size - margin)))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    theta, dist = np.arctan2(dy, dx), np.hypot(dy, dx)
    wobble = np.ones_like(theta)
    for k in (2, 3, 5):
        wobble += rng.uniform(0.05, 0.2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    edge = radius * wobble
    return edge - dist, (cy, cx)


BLOB_MAX_RADIUS = (CROP / 2 - 4) / 1.5  # the largest blob _blob_field can place (for --defect-scale)


def _blob_radius(rng: np.random.Generator, low: float, high: float, scale: float) -> float:
    """A blob radius drawn from [low, high) px, times --defect-scale, capped to what _blob_field can place."""
    return min(float(rng.uniform(low, high)) * scale, BLOB_MAX_RADIUS)


def _blob_mask(radius: float, rng: np.random.Generator, size: int = CROP, center: tuple[float, float] | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """Soft (anti-aliased, 1 px) weight of an irregular blob."""
    field, center = _blob_field(radius, rng, size, center)
    return np.clip(field + 0.5, 0.0, 1.0), center


def _scratch(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
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
    return {"kind": "scratch", "length": round(float(np.hypot(vy, vx)), 1), "width": round(width, 2), "angle_deg": round(np.degrees(angle), 1), "polarity": "bright" if bright else "dark", "value": round(value), "opacity": round(opacity, 2), "center": [round(cy, 1), round(cx, 1)]}, alpha > 0


def _foreign(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    textures = _foreign_textures()
    name = str(rng.choice(sorted(textures)))
    tex = textures[name]
    radius = float(rng.uniform(3.5, 7.5)) * scale  # 7-15 px across
    mask, (cy, cx) = _blob_mask(radius, rng)
    top, left = int(rng.integers(0, tex.shape[0] - CROP + 1)), int(rng.integers(0, tex.shape[1] - CROP + 1))
    patch = tex[top : top + CROP, left : left + CROP].astype(np.float64)
    opacity = float(rng.uniform(0.85, 1.0))
    alpha = mask * opacity
    img[:] = img * (1 - alpha) + patch * alpha
    return {"kind": "foreign", "texture": name, "diameter": round(2 * radius, 1), "opacity": round(opacity, 2), "center": [round(cy, 1), round(cx, 1)], "texture_window": [top, left]}, alpha > 0


def _chip(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    from scipy.ndimage import gaussian_filter

    dark = bool(rng.integers(2))
    # 5-15 px across when darkened; at least 8 px when smoothed (smaller smoothed spots are invisible)
    radius = float(rng.uniform(2.5, 7.5) if dark else rng.uniform(4.0, 7.5)) * scale
    mask, (cy, cx) = _blob_mask(radius, rng)
    if dark:
        factor = float(rng.uniform(0.2, 0.45))
        img[:] = img * (1 - mask) + img * factor * mask
        return {"kind": "chip", "style": "dark", "diameter": round(2 * radius, 1), "factor": round(factor, 2), "center": [round(cy, 1), round(cx, 1)]}, mask > 0
    smooth = gaussian_filter(img, sigma=radius)  # grain worn flat: the local mean, no texture
    shift = float(rng.uniform(-25, 25))
    img[:] = img * (1 - mask) + (smooth + shift) * mask
    return {"kind": "chip", "style": "smoothed", "diameter": round(2 * radius, 1), "shift": round(shift, 1), "center": [round(cy, 1), round(cx, 1)]}, mask > 0


@functools.cache
def _foreign_textures() -> dict[str, np.ndarray]:
    import skimage.data

    return {"grass": skimage.data.grass(), "brick": skimage.data.brick()}


# --------------------------------------------------------------------------------------------------
# Defect kinds of the newer sets: none is a pasted patch, a random-colour blob or a texture blend (what
# ssd's own synthetic anomalies are), so these sets measure how training generalises to unseen kinds.


def _per_pixel(weight: np.ndarray, img: np.ndarray) -> np.ndarray:
    """A HxW weight shaped to multiply a grey (HxW) or colour (HxWx3) image."""
    return weight[..., None] if img.ndim == 3 else weight


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


# Optical densities per RGB channel of the common histology dyes (Ruifrok & Johnston 2001, as in
# skimage.color.hed_from_rgb): a dye adds absorbance, so a stain multiplies each channel by exp(-od * vector).
DYES = {"haematoxylin": (0.65, 0.70, 0.29), "eosin": (0.07, 0.99, 0.11), "DAB": (0.27, 0.57, 0.78)}


def _stain(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    """A stain with a soft edge, half of them with a darker tide line just inside the rim (a dried drop).
    Grey: a smooth brightness shift (a damp or bleached patch). Colour: extra absorbance of a real
    histology dye (a reagent or precipitate stain), so the tint is one a slide can have, not a random colour."""
    radius = _blob_radius(rng, 5, 13, scale)  # 10-26 px across
    field, (cy, cx) = _blob_field(radius, rng)
    feather = float(rng.uniform(0.2, 0.5)) * radius
    w = _smoothstep(field / feather)
    ring = np.where((field > 0) & (field < 3), np.sin(np.pi * np.clip(field, 0, 3) / 3), 0.0)  # a 3-px band
    tide = bool(rng.integers(2))
    params: dict
    if img.ndim == 2:
        shift = float(rng.uniform(20, 45)) * (1 if rng.integers(2) else -1)
        tide_levels = float(rng.uniform(8, 20)) if tide else 0.0
        img += w * shift - tide_levels * ring
        params = {"shift": round(shift, 1), "tide_line": round(tide_levels, 1)}
    else:
        dye = str(rng.choice(sorted(DYES)))
        vector = np.array(DYES[dye]) / np.linalg.norm(DYES[dye])
        od = float(rng.uniform(0.15, 0.5))
        tide_od = float(rng.uniform(0.1, 0.3)) if tide else 0.0
        img *= np.exp(-(od * w + tide_od * ring)[..., None] * vector)
        params = {"dye": dye, "optical_density": round(od, 2), "tide_line_od": round(tide_od, 2)}
    return {"kind": "stain", **params, "diameter": round(2 * radius, 1), "feather": round(feather, 1), "center": [round(cy, 1), round(cx, 1)]}, field > 0


def _smudge(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    """A local loss of sharpness with a soft edge: out of focus (Gaussian blur) or smeared along a direction
    (a wiped finger mark). Brightness is kept, only detail is lost."""
    from scipy.ndimage import gaussian_filter, shift as nd_shift

    radius = _blob_radius(rng, 5, 14, scale)  # 10-28 px across
    field, (cy, cx) = _blob_field(radius, rng)
    feather = float(rng.uniform(0.3, 0.6)) * radius
    smear = bool(rng.integers(2))
    if smear:
        length, angle = float(rng.uniform(5, 11)), float(rng.uniform(0, np.pi))
        offsets = np.linspace(-length / 2, length / 2, 9)
        moves = [(t * np.sin(angle), t * np.cos(angle)) + ((0,) if img.ndim == 3 else ()) for t in offsets]
        blurred = np.mean([nd_shift(img, m, order=1, mode="reflect") for m in moves], axis=0)
        params = {"style": "smear", "length": round(length, 1), "angle_deg": round(np.degrees(angle), 1)}
    else:
        sigma = float(rng.uniform(2.0, 4.0))
        blurred = gaussian_filter(img, sigma=(sigma, sigma, 0)[: img.ndim])
        params = {"style": "defocus", "sigma": round(sigma, 2)}
    w = _per_pixel(_smoothstep(field / feather), img)
    img[:] = img + w * (blurred - img)
    return {"kind": "smudge", **params, "diameter": round(2 * radius, 1), "feather": round(feather, 1), "center": [round(cy, 1), round(cx, 1)]}, field > 0


def _resample(img: np.ndarray, sy: np.ndarray, sx: np.ndarray, order: int = 1) -> np.ndarray:
    """The grey or colour image sampled at the (fractional) pixel positions sy, sx (spline of this order)."""
    from scipy.ndimage import map_coordinates

    if img.ndim == 2:
        return map_coordinates(img, [sy, sx], order=order, mode="reflect")
    return np.stack([map_coordinates(img[..., c], [sy, sx], order=order, mode="reflect") for c in range(img.shape[2])], axis=-1)


def _warp(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    """A local geometric distortion (a fold, a ripple in the film or the lens): the texture inside a disc
    swirled or bulged/pinched, continuous at the rim, its grey levels unchanged."""
    radius = min(float(rng.uniform(8, 15)) * scale, CROP / 2 - 5)  # 16-30 px across
    margin = radius + 4
    cy, cx = float(rng.uniform(margin, CROP - margin)), float(rng.uniform(margin, CROP - margin))
    yy, xx = np.mgrid[0:CROP, 0:CROP].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    t = np.clip(1 - np.hypot(dy, dx) / radius, 0.0, 1.0)  # 1 at the centre, 0 at the rim and outside
    sign = 1.0 if rng.integers(2) else -1.0
    if rng.integers(2):
        strength = sign * float(rng.uniform(1.2, 2.5))  # radians at the centre
        a = strength * t**2
        sy, sx = cy + dy * np.cos(a) - dx * np.sin(a), cx + dy * np.sin(a) + dx * np.cos(a)
        params = {"style": "swirl", "strength_rad": round(strength, 2)}
    else:
        amount = sign * float(rng.uniform(0.35, 0.6))  # > 0 magnifies the centre (bulge), < 0 pinches it
        f = 1 - amount * t**2
        sy, sx = cy + dy * f, cx + dx * f
        params = {"style": "bulge" if amount > 0 else "pinch", "amount": round(amount, 2)}
    mask = t > 0
    img[:] = np.where(_per_pixel(mask, img), _resample(img, sy, sx), img)
    return {"kind": "warp", **params, "diameter": round(2 * radius, 1), "center": [round(cy, 1), round(cx, 1)]}, mask


def _random_walk(length: float, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """A crack-like path (2-px steps whose direction drifts), sometimes with a shorter branch, placed
    inside the crop with a 4-px margin. Returns all points (for the manifest) and the polylines."""

    def walk(n_steps: int, start: np.ndarray, angle: float) -> np.ndarray:
        angles = angle + np.cumsum(rng.normal(0, 0.25, n_steps))
        steps = 2.0 * np.stack([np.sin(angles), np.cos(angles)], axis=1)
        return np.vstack([start, start + np.cumsum(steps, axis=0)])

    main = walk(max(int(length / 2), 2), np.zeros(2), float(rng.uniform(0, 2 * np.pi)))
    lines = [main]
    if rng.integers(2):
        at = main[int(rng.integers(1, len(main) - 1))] if len(main) > 2 else main[0]
        lines.append(walk(max(int(length * rng.uniform(0.3, 0.6) / 2), 2), at, float(rng.uniform(0, 2 * np.pi))))
    return _fit_in_crop(lines, rng)


def _fit_in_crop(lines: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Polylines moved to a random place inside the crop with a 4-px margin (scaled down if too long to fit).
    Returns all points (for the manifest) and the moved polylines."""
    pts = np.vstack(lines)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    shrink = min(1.0, (CROP - 8) / max(float((hi - lo).max()), 1e-9))  # very long walks are scaled to fit
    lines = [(line - lo) * shrink for line in lines]
    span = (hi - lo) * shrink
    origin = np.array([rng.uniform(4, CROP - 4 - span[0]), rng.uniform(4, CROP - 4 - span[1])])
    lines = [line + origin for line in lines]
    return np.vstack(lines), lines


def _polyline_distance(lines: list[np.ndarray]) -> np.ndarray:
    """Distance of every pixel centre to the nearest segment of the polylines."""
    yy, xx = np.mgrid[0:CROP, 0:CROP].astype(np.float64)
    d = np.full((CROP, CROP), np.inf)
    for line in lines:
        for (y0, x0), (y1, x1) in zip(line[:-1], line[1:]):
            vy, vx = y1 - y0, x1 - x0
            t = np.clip(((yy - y0) * vy + (xx - x0) * vx) / max(vy * vy + vx * vx, 1e-9), 0, 1)
            d = np.minimum(d, np.hypot(yy - (y0 + t * vy), xx - (x0 + t * vx)))
    return d


def _crack(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    """A thin curved crack: a dark anti-aliased random-walk line (1-2 px wide, 15-50 px long, sometimes
    branched) that darkens what it crosses to 30-65% of its grey level."""
    length = min(float(rng.uniform(15, 50)) * scale, 2.0 * CROP)
    width = float(rng.uniform(1.0, 2.0)) * scale
    factor = float(rng.uniform(0.3, 0.65))
    pts, lines = _random_walk(length, rng)
    alpha = np.clip(width / 2 + 0.5 - _polyline_distance(lines), 0.0, 1.0)
    img[:] = img * (1 - _per_pixel(alpha * (1 - factor), img))
    return {"kind": "crack", "length": round(length, 1), "width": round(width, 2), "factor": round(factor, 2), "branches": len(lines) - 1, "bbox": [round(float(v), 1) for v in (*pts.min(axis=0), *pts.max(axis=0))]}, alpha > 0


SLIDE_BACKGROUND = np.array([240.0, 239.0, 238.0])  # mean of the brightest 3% of skimage.data.immunohistochemistry()


def _tear(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    """A tissue tear of a histology section: a thin curved line (1-2.5 px) where the near-white slide
    shows through, sometimes branched."""
    length = min(float(rng.uniform(15, 50)) * scale, 2.0 * CROP)
    width = float(rng.uniform(1.0, 2.5)) * scale
    opacity = float(rng.uniform(0.7, 1.0))
    value = SLIDE_BACKGROUND - float(rng.uniform(0, 10))
    pts, lines = _random_walk(length, rng)
    alpha = np.clip(width / 2 + 0.5 - _polyline_distance(lines), 0.0, 1.0)
    w = _per_pixel(alpha * opacity, img)
    img[:] = img * (1 - w) + (value if img.ndim == 3 else value.mean()) * w
    return {"kind": "tear", "length": round(length, 1), "width": round(width, 2), "opacity": round(opacity, 2), "value": np.round(value).tolist(), "branches": len(lines) - 1, "bbox": [round(float(v), 1) for v in (*pts.min(axis=0), *pts.max(axis=0))]}, alpha > 0


def _fill(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    """Missing grain: an irregular spot (6-18 px) whose texture is gone, filled smoothly from its
    surroundings by biharmonic inpainting (a worn or retouched spot: right mean, no grain)."""
    from skimage.restoration import inpaint_biharmonic

    radius = _blob_radius(rng, 3, 9, scale)
    field, (cy, cx) = _blob_field(radius, rng)
    mask = field > 0
    filled = inpaint_biharmonic(img, mask, channel_axis=-1 if img.ndim == 3 else None)
    img[:] = np.where(_per_pixel(mask, img), filled, img)
    return {"kind": "fill", "diameter": round(2 * radius, 1), "center": [round(cy, 1), round(cx, 1)]}, mask


def _dead_columns(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    """A sensor column defect: 1-2 adjacent pixel columns over part of the height (16 px to all of it)
    that are offset by 15-40 grey levels (a faulty column amplifier) or stuck dark (0-30) or bright (225-255)."""
    width = int(rng.integers(1, 3))
    length = int(min(rng.uniform(16, CROP) * scale, CROP))
    x, y = int(rng.integers(4, CROP - 4 - width + 1)), int(rng.integers(0, CROP - length + 1))
    mask = np.zeros((CROP, CROP), dtype=bool)
    mask[y : y + length, x : x + width] = True
    if rng.integers(2):
        offset = float(rng.uniform(15, 40)) * (1 if rng.integers(2) else -1)
        img[mask] += offset
        params = {"style": "offset", "offset": round(offset, 1)}
    else:
        value = float(rng.uniform(0, 30) if rng.integers(2) else rng.uniform(225, 255))
        img[mask] = value
        params = {"style": "stuck", "value": round(value)}
    return {"kind": "dead-columns", **params, "columns": [x, x + width - 1], "rows": [y, y + length - 1]}, mask


def _fibre(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    """A fibre or hair lying on the surface: a smooth anti-aliased arc (a quadratic Bezier curve whose chord is
    15-45 px and whose middle bows out by 10-30% of it), 1-2 px wide, 20-40 grey levels lighter or darker
    than what it covers, casting a faint shadow (6-15 levels darker, 1 px wider) 1-2 px to one side."""
    chord = min(float(rng.uniform(15, 45)) * scale, 1.5 * CROP)
    width = float(rng.uniform(1.0, 2.0)) * scale
    angle = float(rng.uniform(0, 2 * np.pi))
    bow = float(rng.uniform(0.1, 0.3)) * (1 if rng.integers(2) else -1)
    along, across = np.array([np.sin(angle), np.cos(angle)]), np.array([np.cos(angle), -np.sin(angle)])
    t = np.linspace(0.0, 1.0, max(int(chord), 8))[:, None]
    # control point 2*bow*chord off the chord's middle: the curve's middle lies bow*chord off it
    arc = (1 - t) ** 2 * (-along * chord / 2) + 2 * t * (1 - t) * (across * 2 * bow * chord) + t**2 * (along * chord / 2)
    light = float(rng.uniform(0, 2 * np.pi))
    offset = float(rng.uniform(1.0, 2.0)) * scale
    pts, (arc, shadow) = _fit_in_crop([arc, arc + offset * np.array([np.sin(light), np.cos(light)])], rng)
    delta = float(rng.uniform(20, 40)) * (1 if rng.integers(2) else -1)
    depth = float(rng.uniform(6, 15))
    alpha = np.clip(width / 2 + 0.5 - _polyline_distance([arc]), 0.0, 1.0)
    shade = np.clip((width + 1) / 2 + 0.5 - _polyline_distance([shadow]), 0.0, 1.0) * (1 - alpha)
    img += _per_pixel(delta * alpha - depth * shade, img)
    length = float(np.hypot(*np.diff(arc, axis=0).T).sum())
    return {"kind": "fibre", "length": round(length, 1), "chord": round(chord, 1), "bow": round(bow, 2), "width": round(width, 2), "tone": round(delta, 1), "shadow_depth": round(depth, 1), "shadow_offset": round(offset, 2), "shadow_angle_deg": round(float(np.degrees(light)), 1), "bbox": [round(float(v), 1) for v in (*pts.min(axis=0), *pts.max(axis=0))]}, (alpha > 0) | (shade > 0)


def _grain(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    """A patch of extra image noise (a noisy sensor area, coarse film grain): zero-mean Gaussian noise of
    std 6-12 grey levels, correlated over 0-1 px, fading in over 20-40% of the radius of an irregular blob
    12-30 px across. The mean brightness is kept; only the grain gets rougher."""
    from scipy.ndimage import gaussian_filter

    radius = _blob_radius(rng, 6, 15, scale)
    field, (cy, cx) = _blob_field(radius, rng)
    feather = float(rng.uniform(0.2, 0.4)) * radius
    std, corr = float(rng.uniform(6, 12)), float(rng.uniform(0.0, 1.0))
    noise = gaussian_filter(rng.normal(size=(CROP, CROP)), corr)
    noise *= std / noise.std()
    img += _per_pixel(_smoothstep(field / feather) * noise, img)
    return {"kind": "grain", "std": round(std, 1), "correlation_px": round(corr, 2), "diameter": round(2 * radius, 1), "feather": round(feather, 1), "center": [round(cy, 1), round(cx, 1)]}, field > 0


def _rings(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    """Newton's rings (a film or print touching the scanner glass): interference fringes -cos(pi r^2 / s^2)
    around a contact point (dark there, first light ring at r = s / sqrt(2), s = 6-10 px, ever narrower
    outwards and faded out where narrower than 2-3.5 px), amplitude 8-15 grey levels, seen inside an
    irregular blob 16-32 px across whose edge fades over 20-40% of its radius; the contact point lies
    0.3-1 blob radius from the blob's centre, so the blob shows arcs rather than a bull's-eye."""
    radius = _blob_radius(rng, 8, 16, scale)
    field, (cy, cx) = _blob_field(radius, rng)
    feather = float(rng.uniform(0.2, 0.4)) * radius
    spacing, amplitude = float(rng.uniform(6, 10)) * scale, float(rng.uniform(8, 15))
    off, towards = float(rng.uniform(0.3, 1.0)) * radius, float(rng.uniform(0, 2 * np.pi))
    py, px = cy + off * float(np.sin(towards)), cx + off * float(np.cos(towards))
    yy, xx = np.mgrid[0:CROP, 0:CROP].astype(np.float64)
    r = np.hypot(yy - py, xx - px)
    fringes = -np.cos(np.pi * r**2 / spacing**2) * _smoothstep((spacing**2 / np.maximum(r, 1e-9) - 2.0) / 1.5)  # local period s^2/r
    img += _per_pixel(amplitude * _smoothstep(field / feather) * fringes, img)
    return {"kind": "rings", "spacing": round(spacing, 1), "amplitude": round(amplitude, 1), "contact_point": [round(py, 1), round(px, 1)], "diameter": round(2 * radius, 1), "feather": round(feather, 1), "center": [round(cy, 1), round(cx, 1)]}, field > 0


def _droplet(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[dict, np.ndarray]:
    """A drop of water or oil on the print or the scanner glass: a round lens 12-26 px across that shows the
    surface under it magnified 1.3-1.8 times, with a thin dark rim (10-25 grey levels darker at its darkest,
    1.5-2.5 px wide) and a small soft highlight (radius 1.5-3 px, 25-50 levels brighter) towards the light."""
    radius = min(float(rng.uniform(6, 13)) * scale, CROP / 2 - 5)
    margin = radius + 4
    cy, cx = float(rng.uniform(margin, CROP - margin)), float(rng.uniform(margin, CROP - margin))
    magnification = float(rng.uniform(1.3, 1.8))
    rim, rim_depth = float(rng.uniform(1.5, 2.5)) * scale, float(rng.uniform(10, 25))
    light = float(rng.uniform(0, 2 * np.pi))
    glint, glint_radius = float(rng.uniform(25, 50)), float(rng.uniform(1.5, 3.0)) * scale
    yy, xx = np.mgrid[0:CROP, 0:CROP].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    d = np.hypot(dy, dx)
    hy, hx = cy + 0.5 * radius * np.sin(light), cx + 0.5 * radius * np.cos(light)
    shade = -rim_depth * np.sin(0.5 * np.pi * np.clip((d - radius + rim) / rim, 0.0, 1.0))  # darkest at the edge
    shade += glint * _smoothstep(1 - np.hypot(yy - hy, xx - hx) / glint_radius)
    lens = _resample(img, cy + dy / magnification, cx + dx / magnification, order=3) + _per_pixel(shade, img)
    alpha = np.clip(radius + 0.5 - d, 0.0, 1.0)
    img[:] = img + _per_pixel(alpha, img) * (lens - img)
    return {"kind": "droplet", "diameter": round(2 * radius, 1), "magnification": round(magnification, 2), "rim_width": round(rim, 2), "rim_depth": round(rim_depth, 1), "glint": round(glint, 1), "glint_radius": round(glint_radius, 2), "light_deg": round(float(np.degrees(light)), 1), "center": [round(cy, 1), round(cx, 1)]}, alpha > 0


DefectFn = Callable[[np.ndarray, np.random.Generator, float], tuple[dict, np.ndarray]]
DEFECTS: dict[str, DefectFn] = {
    "scratch": _scratch, "foreign": _foreign, "chip": _chip,
    "stain": _stain, "smudge": _smudge, "warp": _warp, "crack": _crack, "tear": _tear, "fill": _fill, "dead-columns": _dead_columns,
    "fibre": _fibre, "grain": _grain, "rings": _rings, "droplet": _droplet,
}


@dataclass(frozen=True)
class TextureSet:
    """A set of 128x128 crops of one skimage.data photo with drawn-in local defects."""

    source: str  # the skimage.data function
    kinds: tuple[str, ...]
    normal_prefix: str = "crop"
    # A defect whose mean change inside its mask is below this many grey levels (a blur of a flat area) is
    # drawn again, up to 20 times, so that every defect is visible; 0 = never (the first set, as first made).
    min_change: float = 4.0


# Higher floors for thin lines, whose mask is mostly changed pixels: a tear must cross tissue, not glass.
KIND_MIN_CHANGE = {"tear": 15.0}


# Every set this script can write, in a fixed order: a set's position picks its random stream, so sets stay
# independent of each other and of --sets. Append new sets at the end, never reorder.
SET_NAMES = ("colour-objects", "surface-defects", "grass-blemishes", "brick-cracks", "histology-defects", "moon-defects")
TEXTURE_SETS = {
    "surface-defects": TextureSet("gravel", DEFECT_KINDS, normal_prefix="surface", min_change=0.0),  # as first made
    "grass-blemishes": TextureSet("grass", ("stain", "smudge", "fill", "warp")),
    "brick-cracks": TextureSet("brick", ("crack", "stain", "dead-columns")),
    "histology-defects": TextureSet("immunohistochemistry", ("stain", "smudge", "tear")),
    "moon-defects": TextureSet("moon", ("fibre", "grain", "rings", "droplet")),
}


def _save_image(img: np.ndarray, path: Path) -> None:
    Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "L" if img.ndim == 2 else "RGB").save(path, format="PNG")


def _mask_change(before: np.ndarray, after: np.ndarray, mask: np.ndarray, where: str) -> dict:
    """Check that the saved pixels changed by the defect all lie inside its mask (no tolerance: outside
    the mask the saved image equals the clean crop), and measure how strong the defect is."""
    a, b = (np.clip(np.rint(x), 0, 255) for x in (before, after))
    diff = np.abs(b - a) if a.ndim == 2 else np.abs(b - a).max(axis=2)
    if (diff[~mask] > 0).any():
        raise SystemExit(f"{where}: {int((diff[~mask] > 0).sum())} changed pixels outside the mask (max change {diff[~mask].max():g})")
    return {"mask_pixels": int(mask.sum()), "changed_pixels": int((diff > 0).sum()), "mean_change_in_mask": round(float(diff[mask].mean()), 1)}


def make_texture_set(out: Path, spec: TextureSet, rng: np.random.Generator, scale: float = 1.0) -> list[dict]:
    """Crops of spec.source (train from the top 60%, test from the rest) with one defect per anomalous crop
    and, for each, a mask PNG (255 = defect) at the same relative path under train/masks/ or test/masks/."""
    import skimage.data

    photo = getattr(skimage.data, spec.source)()
    split_row = int(round(photo.shape[0] * TRAIN_FRACTION))
    regions = {"train": (0, split_row), "test": (split_row, photo.shape[0])}
    manifest: list[dict] = []

    def write(split: str, folder: str, n: int, kinds: list[str | None], prefix: str) -> None:
        path = out / split / folder
        path.mkdir(parents=True)
        if any(kinds):
            (out / split / "masks").mkdir(parents=True, exist_ok=True)
        for k in range(n):
            img, where = _crop(photo, regions[split], rng)
            name = f"{prefix}_{k:03d}.png"
            entry = {"file": (path / name).relative_to(out.parent).as_posix(), "source": f"skimage.data.{spec.source}", "split": split, "label": "normal" if kinds[k] is None else "anomalous", "crop": where, "defect": None}
            if kinds[k] is not None:
                clean = img
                floor = max(spec.min_change, KIND_MIN_CHANGE.get(kinds[k], 0.0)) if spec.min_change else 0.0
                for attempt in range(1, 21):
                    img = clean.copy()
                    defect, mask = DEFECTS[kinds[k]](img, rng, scale)
                    change = _mask_change(clean, img, mask, entry["file"])
                    if change["mean_change_in_mask"] >= floor and change["changed_pixels"] > 0:
                        break
                else:
                    raise SystemExit(f"{entry['file']}: no visible {kinds[k]} in 20 attempts")
                mask_path = out / split / "masks" / name
                entry.update(defect=defect, mask=mask_path.relative_to(out.parent).as_posix(), **change)
                if spec.min_change:
                    entry["attempts"] = attempt
                Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L").save(mask_path, format="PNG")
            _save_image(img, path / name)
            manifest.append(entry)

    def kinds_for(n: int) -> list[str]:
        base = [spec.kinds[i % len(spec.kinds)] for i in range(n)]  # 3 kinds: 34/33/33 of 100, 7/7/6 of 20
        return [base[i] for i in rng.permutation(n)]

    write("train", "normal", 500, [None] * 500, spec.normal_prefix)
    write("train", "bad", 20, kinds_for(20), "reject")
    write("test", "normal", 100, [None] * 100, "ok")
    write("test", "anomalous", 100, kinds_for(100), "defect")
    return manifest


def contact_sheet(set_dir: Path, manifest: list[dict], path: Path, per_kind: int = 3, zoom: int = 2) -> None:
    """A PNG to look at (magnified `zoom` times): per defect kind a row of test defects, each shown plain and
    with its mask outline in red, and a last row of normal test crops."""
    from scipy.ndimage import binary_erosion

    def rgb(p: Path) -> np.ndarray:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB")).copy()

    root = set_dir.parent
    tests = [m for m in manifest if m["file"].startswith(f"{set_dir.name}/test/")]
    kinds = sorted({m["defect"]["kind"] for m in tests if m["defect"]})
    rows: list[list[np.ndarray]] = []
    for kind in kinds:
        row = []
        for m in [m for m in tests if m["defect"] and m["defect"]["kind"] == kind][:per_kind]:
            img = rgb(root / m["file"])
            with Image.open(root / m["mask"]) as im:
                mask = np.asarray(im) > 127
            outlined = img.copy()
            outlined[mask & ~binary_erosion(mask)] = (255, 0, 0)
            row += [img, outlined]
        rows.append(row)
    rows.append([rgb(root / m["file"]) for m in tests if m["label"] == "normal"][: 2 * per_kind])
    gap, n_cols = 4, max(len(r) for r in rows)
    sheet = np.full((len(rows) * (CROP + gap) - gap, n_cols * (CROP + gap) - gap, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            sheet[i * (CROP + gap) : i * (CROP + gap) + CROP, j * (CROP + gap) : j * (CROP + gap) + CROP] = tile
    Image.fromarray(sheet).resize((sheet.shape[1] * zoom, sheet.shape[0] * zoom), Image.NEAREST).save(path)


# --------------------------------------------------------------------------------------------------
README_HEAD = """Evaluation folders for `ssd`, made by benchmarks/make_photo_sets.py (seed {seed}).
Command: {command}
{scale_note}Every file is listed in manifest.json with its source and, for defects, the exact defect parameters,
the mask file, the mask's pixel count and the mean grey-level change inside the mask.

Masks (every set of crops): for each anomalous image (train/bad/NAME.png, test/anomalous/NAME.png) a mask
train/masks/NAME.png or test/masks/NAME.png, same size, 255 = the pixels the defect drawing touched, 0
elsewhere. They are computed from the drawing (soft-edged defects: every pixel of nonzero weight, so
their outer rim of 1-10 px changes only slightly); outside the mask the image equals the clean crop.

Crops (every set of crops): 128x128 PNG windows of one photo bundled with scikit-image {skversion}, random
position, random horizontal flip, random 90-degree rotation (0-3). Training crops (train/) come only from
the top 60% of the source's rows, test crops (test/) only from the rest, so test images are unseen
texture (train crops overlap each other heavily). Each set: train/normal/ 500 crops, train/bad/ 20
defect crops from the training region (7/7/6 with three kinds, 5 each with four), test/normal/ 100,
test/anomalous/ 100 defect crops (34/33/33, or 25 each); one defect per image, inside the crop.
In the newer sets (all but surface-defects) a defect whose mean change inside its mask is under 4 grey
levels (15 for a tear, which must cross tissue, not glass) is drawn again on the same crop (manifest:
attempts), so that every defect is visible.
"""

README_SETS = {
    "colour-objects": """
colour-objects/  real CIFAR-10 photos (32x32 RGB JPEG, quality about 75) from {cifar}
  Normal class: automobile. Anomalies: the 9 other CIFAR-10 classes. No masks (whole-image anomalies).
  train/normal/     600 automobile photos drawn at random from the 5,000 train photos, spread over nested
                    subfolders lot_A/ (200 JPEG), lot_B/day1/ and lot_B/day2/ (150 each, 30% re-saved as
                    lossless PNG of the decoded JPEG), lot_C/old_camera/ (100, all PNG). JPEGs are the
                    original bytes.
  train/bad/        20 labeled anomalies: train photos of the other classes, 2-3 per class.
  test/normal/      200 automobile photos of the official test split.
  test/anomalous/   200 test-split photos of the other classes, 22-23 per class.
""",
    "surface-defects": """
surface-defects/  grayscale crops of the real gravel texture photo (skimage.data.gravel(), 512x512; train
                  rows 0-306, test rows 307-511), normal crops named surface_NNN.png.
  Kinds: scratch, foreign, chip.
    scratch  a straight anti-aliased line segment, length 15-50 px, width 1-2.5 px, random angle,
             bright (grey level 215-250) or dark (5-35), opacity 0.75-1.
    foreign  an irregular blob (a circle of radius 3.5-7.5 px, i.e. 7-15 px across, whose radius wobbles
             with harmonics 2, 3, 5; 1-px soft edge) filled with the same window of another real
             texture, skimage.data.grass() or skimage.data.brick(), opacity 0.85-1.
    chip     an irregular blob, either darkened to 20-45% of its grey level (a pit, 5-15 px across) or
             replaced by a Gaussian-smoothed version of the crop (sigma = blob radius) shifted by
             -25..+25 grey levels (grain worn flat, 8-15 px across).
""",
    "grass-blemishes": """
grass-blemishes/  grayscale crops of the real grass photo (skimage.data.grass(), 512x512; train rows 0-306,
                  test rows 307-511). Four kinds (train/bad 5 each, test/anomalous 25 each): stain, smudge,
                  fill, warp. None adds a foreign patch, a pasted copy or a colour:
    stain    a smooth brightness shift of +-20..45 grey levels inside an irregular blob 10-26 px across
             whose edge fades over 20-50% of its radius; half have a tide line (8-20 levels darker, a
             3-px band inside the rim), like a dried water stain.
    smudge   detail lost inside an irregular soft-edged blob 10-28 px across: defocus (Gaussian blur,
             sigma 2-4 px) or a smear (mean of 9 copies shifted along a random direction over 5-11 px);
             the mean brightness is kept.
    fill     missing grain: an irregular spot 6-18 px across replaced by biharmonic inpainting from its
             surroundings (the right brightness, no texture).
    warp     a geometric distortion inside a disc 16-30 px across, continuous at its rim: a swirl
             (1.2-2.5 rad at the centre) or a bulge/pinch (scale 0.4-0.65 or 1.35-1.6 at the centre).
""",
    "brick-cracks": """
brick-cracks/  grayscale crops of the real brick wall photo (skimage.data.brick(), 512x512; train rows
               0-306, test rows 307-511). Kinds: crack, stain, dead-columns:
    crack         a thin curved crack: an anti-aliased random walk (2-px steps, direction drifting by
                  0.25 rad per step) 15-50 px long and 1-2 px wide, half of them with a branch 30-60% as
                  long, darkening what it crosses to 30-65% of its grey level.
    stain         a damp or bleached patch: as the stain of grass-blemishes.
    dead-columns  a sensor defect: 1-2 adjacent pixel columns over 16-128 px of the height, offset by
                  +-15..40 grey levels or stuck at a dark (0-30) or bright (225-255) value.
""",
    "histology-defects": """
histology-defects/  COLOUR (RGB) crops of the real immunohistochemistry micrograph (skimage.data.
                    immunohistochemistry(), 512x512: brown-stained glands, blue nuclei, pale stroma; train
                    rows 0-306, test rows 307-511). Kinds: stain, smudge, tear:
    stain    extra absorbance of a real histology dye (haematoxylin blue, eosin pink or DAB brown;
             optical density 0.15-0.5, each channel multiplied by exp(-od * dye vector)) inside an
             irregular soft-edged blob 10-26 px across, half with a darker tide line (od 0.1-0.3).
    smudge   out of focus or smeared, as in grass-blemishes (each channel alike).
    tear     a tissue tear: a random-walk line as the crack of brick-cracks, 1-2.5 px wide, where the
             near-white slide (RGB about 230-240) shows through at opacity 0.7-1.
""",
    "moon-defects": """
moon-defects/  grayscale crops of the real lunar surface photo (skimage.data.moon(), 512x512: fine grain,
               small craters, dark maria patches; train rows 0-306, test rows 307-511). Four kinds
               (train/bad 5 each, test/anomalous 25 each): fibre, grain, rings, droplet. None is a pasted
               patch, a flat-coloured blob, a blended texture, a brightness stain or a blur:
    fibre    a fibre or hair on the surface: a smooth anti-aliased arc (quadratic Bezier, chord 15-45 px,
             its middle bowed out by 10-30% of the chord), 1-2 px wide, 20-40 grey levels lighter or
             darker than what it covers, casting a faint shadow (6-15 levels darker, 1 px wider) offset
             1-2 px to a random side.
    grain    a noisy patch (a noisy sensor area, coarse film grain): zero-mean Gaussian noise, std 6-12
             grey levels, smoothed over 0-1 px, added inside an irregular blob 12-30 px across whose edge
             fades over 20-40% of its radius; the mean brightness is kept.
    rings    Newton's rings (film or print touching the scanner glass): interference fringes
             -cos(pi r^2 / s^2) around a contact point (dark there, s = 6-10 px, so ever narrower outwards,
             faded out where narrower than 2-3.5 px), amplitude 8-15 grey levels, seen inside an irregular
             blob 16-32 px across whose edge fades over 20-40% of its radius; the contact point lies 0.3-1
             blob radius off the blob's centre, so mostly arcs show.
    droplet  a drop of water or oil on the print or the glass: a round lens 12-26 px across showing the
             surface under it magnified 1.3-1.8x (cubic spline), with a thin dark rim (1.5-2.5 px, 10-25
             levels darker at the edge) and a soft highlight (radius 1.5-3 px, 25-50 levels brighter)
             halfway to the rim on a random side.
""",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder to create (must not exist or be empty)")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="holds cifar10-jpeg/ (only for colour-objects)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default=",".join(SET_NAMES), help=f"comma-separated sets to write (default all: {','.join(SET_NAMES)})")
    ap.add_argument("--defect-scale", type=float, default=1.0, help="multiply every defect size (diameters, line widths and lengths) by this; 1 = the sizes given in README.txt")
    ap.add_argument("--contact-sheets", type=Path, metavar="DIR", help="also write DIR/SET-contact-sheet.png per set of crops (examples with mask outlines)")
    args = ap.parse_args(argv)

    import skimage

    out: Path = args.out
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SET_NAMES]
    if unknown or not names:
        print(f"error: --sets: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SET_NAMES)}", file=sys.stderr)
        return 2
    cifar = args.data_root / "cifar10-jpeg"
    if "colour-objects" in names and not (cifar / "train" / NORMAL_CLASS).is_dir():
        print(f"error: {cifar} has no train/{NORMAL_CLASS}/ (see the datasets README)", file=sys.stderr)
        return 3
    if out.exists() and any(out.iterdir()):
        print(f"error: {out} exists and is not empty", file=sys.stderr)
        return 5
    out.mkdir(parents=True, exist_ok=True)
    # One generator per set, chosen by the set's fixed position, so that one set never changes another.
    seeds = dict(zip(SET_NAMES, np.random.SeedSequence(args.seed).spawn(len(SET_NAMES))))
    manifest: list[dict] = []
    for name in SET_NAMES:
        if name not in names:
            continue
        rng = np.random.default_rng(seeds[name])
        if name == "colour-objects":
            part = make_colour_objects(out / name, cifar, rng)
        else:
            part = make_texture_set(out / name, TEXTURE_SETS[name], rng, args.defect_scale)
            if args.contact_sheets:
                args.contact_sheets.mkdir(parents=True, exist_ok=True)
                contact_sheet(out / name, part, args.contact_sheets / f"{out.name}-{name}-contact-sheet.png")
        manifest += part
    command = f"python benchmarks/make_photo_sets.py --out DIR --sets {','.join(n for n in SET_NAMES if n in names)} --seed {args.seed}"
    if "colour-objects" in names:
        command += " --data-root DATA_ROOT"
    if args.defect_scale != 1.0:
        command += f" --defect-scale {args.defect_scale:g}"
    scale_note = ""
    if args.defect_scale != 1.0:
        scale_note = f"DEFECT SCALE {args.defect_scale:g}: every defect size below (diameters, line widths and lengths, capped to fit the\ncrop) is multiplied by {args.defect_scale:g}; these are NOT the small defects of the default sets.\n"
    text = README_HEAD.format(seed=args.seed, command=command, scale_note=scale_note, skversion=skimage.__version__)
    text += "".join(README_SETS[n].format(cifar=cifar) for n in SET_NAMES if n in names)
    (out / "README.txt").write_text(text)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    counts: dict[str, int] = {}
    for m in manifest:
        for key in (m["file"], m.get("mask")):
            if key:
                key = "/".join(key.split("/")[:3])
                counts[key] = counts.get(key, 0) + 1
    for key, n in sorted(counts.items()):
        print(f"{n:5d}  {out / key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
