"""Looking at the training folders before training: what the images are, and the input chosen from them.

`scan_inputs` lists every role's files (listing is unavoidable) and then looks at a bounded,
deterministic sample of each role: headers (size, mode, format) and a small reduced decode to tell
colour from grayscale. Nothing else depends on the folder size, so a million-file folder costs its
listing plus `sample` small decodes. `choose_input` picks what the user left open, `input_warnings`
says what looks wrong. Nothing here prints.

Rules of `choose_input` (each only for what the user did not set):

- channels: 3 if at least 10% of the sampled unlabeled images are colour, else 1. An image is colour
  when its channels differ, measured on a decode reduced to at most 64 px: a mean spread
  (max - min channel) of at least 4/255, or at least 2% of pixels spreading by more than 32/255.
  A grayscale photo stored as RGB or JPEG has no spread beyond compression noise and counts as
  grayscale; grayscale modes (L, 16-bit, float) count as grayscale without looking.
- image_size: with --arch, that network's own input size (the paper's networks are defined for it).
  Otherwise the largest of SIZE_STEPS (28, 32, 64, 128, 256) not above the median short side of the
  unlabeled sample (never upsample by choice), at least 32 and at most 256; except 28 when the images
  are grayscale (channels 1) and their median short side is at most 28, so MNIST-like folders get
  the paper's `mnist` network exactly.
- arch: network_for_size(image_size).

The unlabeled sample is the role Role.UNLABELED, or the first role when there is none.
"""

from __future__ import annotations

import os
import random
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

from ssd_cli.core.config import Resize
from ssd_cli.data.images import DECODE_ERRORS, Skipped, default_workers, list_images, name_skipped, open_image, unreadable
from ssd_cli.errors import InputError
from ssd_cli.core.nets import SIZE_STEPS, get_spec, network_for_size
from ssd_cli.core.roles import Role

PROBE_SIDE = 64  # the colour test looks at a decode reduced to about this many pixels a side
COLOUR_MEAN_SPREAD = 4.0  # mean channel spread (0-255) from which an image is colour...
COLOUR_PIXEL_SPREAD = 32  # ...or when COLOUR_PIXEL_SHARE of its pixels spread by more than this
COLOUR_PIXEL_SHARE = 0.02
COLOUR_IMAGE_SHARE = 0.10  # channels = 3 from this share of colour images in the unlabeled sample
SMALLEST_COLOUR_SIZE = 32  # 28 is the paper's grayscale (MNIST) input only
LARGEST_CHOSEN_SIZE = 256
FEW_UNLABELED, FEW_LABELED = 50, 5
ASPECT_SPREAD = 1.5  # 90th / 10th percentile of long/short side beyond which shapes "vary widely"
WIDE = 1.5  # median long/short side beyond which squash visibly distorts

_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_TURNED = frozenset({5, 6, 7, 8})  # EXIF orientations shown turned by 90 degrees: width and height swap


@dataclass(frozen=True)
class Spread:
    """Minimum, median and maximum of one quantity over the sampled images."""

    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        return cls(float(min(values)), float(statistics.median(values)), float(max(values))) if values else None


@dataclass(frozen=True)
class RoleScan:
    """One role's files and what its sample showed; sizes are as displayed (EXIF orientation applied)."""

    role: str
    files: tuple[Path, ...]
    skipped: tuple[Skipped, ...]  # non-image files found by the listing
    sampled: int  # files of the sample (readable or not)
    unreadable: tuple[Skipped, ...]  # sampled files that could not be decoded
    colour: int  # readable sampled images that are colour
    sizes: tuple[tuple[int, int], ...]  # (width, height) of each readable sampled image
    formats: Mapping[str, int]  # Pillow format name -> readable sampled images

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def readable(self) -> int:
        return len(self.sizes)

    @property
    def colour_fraction(self) -> float | None:
        return self.colour / self.readable if self.readable else None

    @property
    def width(self) -> Spread | None:
        return Spread.of([w for w, _ in self.sizes])

    @property
    def height(self) -> Spread | None:
        return Spread.of([h for _, h in self.sizes])

    @property
    def short_side(self) -> Spread | None:
        return Spread.of([min(s) for s in self.sizes])

    @property
    def aspect(self) -> Spread | None:
        """Long side / short side (1 = square)."""
        return Spread.of(_aspects(self.sizes))


@dataclass(frozen=True)
class Overlap:
    """Files listed in two roles (the same file after resolving links), as listed in the first."""

    roles: tuple[str, str]
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class ScanReport:
    roles: Mapping[str, RoleScan]  # in the order given
    overlaps: tuple[Overlap, ...]
    sample: int  # the sample bound per role

    @property
    def unlabeled(self) -> RoleScan:
        """The role the input is chosen from: the unlabeled images, or the first role."""
        return self.roles.get(Role.UNLABELED) or next(iter(self.roles.values()))


@dataclass(frozen=True)
class InputChoice:
    arch: str
    channels: int
    image_size: int
    reasons: tuple[str, ...]  # one short sentence per chosen value, empty for values the user set


# --------------------------------------------------------------------------------------------- scan


def scan_inputs(roles: Mapping[str, Sequence[Path]], *, sample: int = 256, seed: int = 0) -> ScanReport:
    """List every role's files and look at a deterministic sample of at most `sample` files per role.

    Raises InputError for a missing path, a role without any image file (from list_images), and a
    role none of whose files could be read when the sample held them all: before the plan is shown,
    since nothing could be trained on.
    """
    scans = {role: _scan_listed(role, paths, sample, seed) for role, paths in roles.items()}
    return ScanReport(scans, _overlaps(scans), sample)


def with_role(report: ScanReport, role: str, paths: Sequence[Path], *, seed: int = 0) -> ScanReport:
    """The report with one more role scanned (or a role scanned again) from `paths`: how a plan adds
    files it decides on after the first scan (ssd's own outlier photos), by the same rules."""
    scans = {**report.roles, role: _scan_listed(role, paths, report.sample, seed)}
    return ScanReport(scans, _overlaps(scans), report.sample)


def _scan_listed(role: str, paths: Sequence[Path], sample: int, seed: int) -> RoleScan:
    """One role listed and sampled; InputError when none of its files could be read."""
    listing = list_images(paths, what=role)
    scan = _scan_role(role, listing.files, listing.skipped, sample, seed)
    if not scan.readable and scan.sampled == scan.count:
        raise InputError(f"{role}: none of the {scan.count} image file(s) could be read: {name_skipped(scan.unreadable)}")
    return scan


def _scan_role(role: str, files: list[Path], skipped: list[Skipped], sample: int, seed: int) -> RoleScan:
    chosen = files if len(files) <= sample else [files[i] for i in sorted(random.Random(seed).sample(range(len(files)), sample))]
    with ThreadPoolExecutor(max_workers=default_workers()) as pool:
        probes = list(pool.map(_try_probe, chosen))
    ok = [p for p in probes if isinstance(p, Probe)]
    return RoleScan(
        role=role,
        files=tuple(files),
        skipped=tuple(skipped),
        sampled=len(chosen),
        unreadable=tuple(p for p in probes if isinstance(p, Skipped)),
        colour=sum(p.colour for p in ok),
        sizes=tuple((p.width, p.height) for p in ok),
        formats=dict(Counter(p.format for p in ok).most_common()),
    )


@dataclass(frozen=True)
class Probe:
    """What the sample learns of one image."""

    width: int
    height: int
    format: str
    colour: bool


def _try_probe(path: Path) -> Probe | Skipped:
    try:
        return probe_image(path)
    except DECODE_ERRORS as exc:
        return unreadable(path, exc)


def probe_image(path: Path) -> Probe:
    """Header facts and colour of one image from a reduced decode (JPEG: at 1/8 scale when large)."""
    with open_image(path) as im:
        fmt, (w, h) = im.format or "unknown", im.size
        im.draft(None, (PROBE_SIDE, PROBE_SIDE))
        im.load()  # a truncated or corrupt file fails here, as it would in training
        turned = im.getexif().get(ExifTags.Base.Orientation, 1) in _TURNED
        colour = is_colour(im)
    return Probe(h if turned else w, w if turned else h, fmt, colour)


def is_colour(im: Image.Image) -> bool:
    """Whether the channels differ by more than compression noise (see the module docstring)."""
    if im.mode in _GRAYSCALE_MODES:
        return False
    rgb = im.convert("RGB")
    factor = max(rgb.size) // PROBE_SIDE
    if factor > 1:
        rgb = rgb.reduce(factor)
    arr = np.asarray(rgb, dtype=np.int16)
    spread = arr.max(axis=2) - arr.min(axis=2)
    return bool(spread.mean() >= COLOUR_MEAN_SPREAD or (spread > COLOUR_PIXEL_SPREAD).mean() >= COLOUR_PIXEL_SHARE)


def _overlaps(scans: Mapping[str, RoleScan]) -> tuple[Overlap, ...]:
    """Files listed under two roles; one role alone has none, and its files are not resolved."""
    if len(scans) < 2:
        return ()
    keyed = {role: _resolved(scan.files) for role, scan in scans.items()}
    names = list(scans)
    found = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = keyed[a].keys() & keyed[b].keys()
            if common:
                found.append(Overlap((a, b), tuple(sorted(keyed[a][k] for k in common))))
    return tuple(found)


def _resolved(files: Sequence[Path]) -> dict[str, Path]:
    """Resolved path -> listed path. Each folder is resolved once (symlinked folders, `..`), a file
    only when it is itself a link: one lstat per file instead of one per path component."""
    folders: dict[str, str] = {}
    out: dict[str, Path] = {}
    for path in files:
        text = os.path.abspath(path)
        folder, name = os.path.split(text)
        real = folders.get(folder)
        if real is None:
            real = folders[folder] = os.path.realpath(folder)
        key = os.path.realpath(text) if os.path.islink(text) else os.path.join(real, name)
        out.setdefault(key, path)
    return out


# --------------------------------------------------------------------------------------------- choice


def choose_input(
    report: ScanReport, *, arch: str | None = None, channels: int | None = None, image_size: int | None = None
) -> InputChoice:
    """Network, channels and input size: the user's where set, otherwise chosen by the module's rules."""
    scan = report.unlabeled
    reasons: list[str] = []
    if channels is None:
        channels, why = _choose_channels(scan)
        reasons.append(why)
    if image_size is None:
        image_size, why = (get_spec(arch).image_size, f"the {arch} network's own input size") if arch else _choose_size(scan, channels)
        reasons.append(f"{image_size} px: {why}")
    if arch is None:
        arch = network_for_size(image_size)
        reasons.append(f"{arch}: the network for {image_size} px inputs")
    return InputChoice(arch, channels, image_size, tuple(reasons))


def _choose_channels(scan: RoleScan) -> tuple[int, str]:
    share = scan.colour_fraction
    if share is None:
        return 1, "grayscale: no sampled image could be read"
    described = f"{100 * share:.0f}% of {scan.readable} sampled images are colour"
    return (3, f"colour: {described}") if share >= COLOUR_IMAGE_SHARE else (1, f"grayscale: only {described}")


def _choose_size(scan: RoleScan, channels: int) -> tuple[int, str]:
    short = scan.short_side
    if short is None:
        size = SIZE_STEPS[0] if channels == 1 else SMALLEST_COLOUR_SIZE
        return size, "no sampled image could be read"
    median = short.median
    seen = f"median short side {median:g} px"
    if channels == 1 and median <= SIZE_STEPS[0]:
        return SIZE_STEPS[0], f"{seen}, grayscale (the paper's MNIST input)"
    fitting = [s for s in SIZE_STEPS if SMALLEST_COLOUR_SIZE <= s <= min(median, LARGEST_CHOSEN_SIZE)]
    if not fitting:
        return SMALLEST_COLOUR_SIZE, f"{seen}, raised to the {SMALLEST_COLOUR_SIZE} px minimum"
    if median > LARGEST_CHOSEN_SIZE:
        return fitting[-1], f"{seen}, capped at {LARGEST_CHOSEN_SIZE} px"
    return fitting[-1], f"{seen}; the largest of {'/'.join(map(str, SIZE_STEPS))} px not above it"


# --------------------------------------------------------------------------------------------- warnings


def input_warnings(report: ScanReport, choice: InputChoice, resize: Resize, *, tiled: bool = False) -> list[str]:
    """One sentence per problem worth knowing before training; none of them stops the run. Tiles
    keep the images' shape, so a tiled model has no shape to warn about."""
    return [
        *_overlap_warnings(report),
        *_few_images(report),
        *([] if tiled else _shape_warnings(report.unlabeled, resize)),
        *_small_images(report.unlabeled, choice),
        *_unreadable(report),
    ]


def _overlap_warnings(report: ScanReport) -> list[str]:
    out = []
    for overlap in report.overlaps:
        a, b = overlap.roles
        if Role.UNLABELED in overlap.roles:
            labeled = b if a == Role.UNLABELED else a
            fate = f"they count as {labeled} only (a label is stronger than none)"
        else:
            fate = "their labels contradict each other, so they count as unlabeled only"
        n = len(overlap.paths)
        out.append(f"{n} file{'s are' if n != 1 else ' is'} in both {a} and {b} (e.g. {overlap.paths[0]}): {fate}")
    return out


def _few_images(report: ScanReport) -> list[str]:
    unlabeled = report.unlabeled
    out = []
    if unlabeled.count < FEW_UNLABELED:
        out.append(
            f"only {unlabeled.count} image(s) in {unlabeled.role}: with fewer than {FEW_UNLABELED} the model "
            "learns little of what normal looks like"
        )
    for scan in report.roles.values():
        if scan is not unlabeled and scan.count < FEW_LABELED:
            out.append(f"only {scan.count} image(s) in {scan.role}: fewer than {FEW_LABELED} labeled examples help little")
    return out


def _shape_warnings(scan: RoleScan, resize: Resize) -> list[str]:
    aspects = _aspects(scan.sizes)
    if not aspects:
        return []
    low, high = np.percentile(aspects, [10, 90])
    median = statistics.median(aspects)
    varied = high / low > ASPECT_SPREAD
    seen = f"{scan.role} images' long/short side ratio runs from {low:.2f} to {high:.2f} (10th-90th percentile, median {median:.2f})"
    if resize is Resize.SQUASH and (varied or median > WIDE):
        return [f"{seen}; --resize squash distorts them: --resize crop (centre square) or pad (black bars) keeps their shape"]
    if varied:
        what = "crop cuts off a different share of each image" if resize is Resize.CROP else "pad gives them black bars of different widths"
        return [f"{seen}; --resize {what}, which the model may learn as a feature"]
    return []


def _small_images(scan: RoleScan, choice: InputChoice) -> list[str]:
    short = scan.short_side
    if short is None or short.median >= choice.image_size / 2:
        return []
    return [
        (
            f"{scan.role} images are small for the {choice.image_size} px input (median short side {short.median:g} px): "
            "they will be upscaled, which adds no detail; a smaller --image-size trains faster"
        )
    ]


def _unreadable(report: ScanReport) -> list[str]:
    out = []
    for scan in report.roles.values():
        if scan.unreadable and scan.sampled < scan.count:  # a fully sampled role: decoding names every one
            first = scan.unreadable[0]
            more = f", and about {round(len(scan.unreadable) * scan.count / scan.sampled)} of all {scan.count}"
            out.append(
                f"{len(scan.unreadable)} of {scan.sampled} sampled {scan.role} files could not be read "
                f"(e.g. {first.path}: {first.reason}); they will be skipped{more}"
            )
    return out


def _aspects(sizes: Sequence[tuple[int, int]]) -> list[float]:
    return [max(w, h) / min(w, h) for w, h in sizes if min(w, h) > 0]
