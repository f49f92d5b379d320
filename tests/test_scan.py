"""Scanning training folders: per-role statistics, colour detection, overlaps, the input choice and warnings."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image

from ssd_cli.data import scan as scan_module
from ssd_cli.core.config import Resize
from ssd_cli.core.roles import Role
from ssd_cli.errors import InputError
from ssd_cli.data.images import Skipped
from ssd_cli.data.scan import (
    InputChoice,
    RoleScan,
    ScanReport,
    Spread,
    choose_input,
    input_warnings,
    probe_image,
    scan_inputs,
)


def save(path: Path, im: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def colour_image(w: int, h: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients with a little texture (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full((h, w), 90)], axis=-1)
    arr = arr + rng.integers(-10, 11, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def gray_image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = (x + y) * 255 // max(w + h - 2, 1) + rng.integers(-20, 21, (h, w))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")


# --- per-role statistics -------------------------------------------------------------------------


def test_role_statistics(tmp_path: Path) -> None:
    root = tmp_path / "u"
    save(root / "a.png", colour_image(100, 50))
    save(root / "b.png", gray_image(60, 60))
    save(root / "sub" / "c.jpg", colour_image(40, 80), quality=90)
    save(root / "sub" / "d.jpg", gray_image(200, 100).convert("RGB"), quality=60)  # grayscale stored as RGB JPEG
    save(root / "e.png", gray_image(30, 90).convert("RGB"))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "notes.txt").write_text("not an image")
    report = scan_inputs({Role.UNLABELED: [root]})
    s = report.roles[Role.UNLABELED]
    assert s.role == Role.UNLABELED and s.count == 6 and s.sampled == 6 and s.readable == 5
    assert [x.path.name for x in s.skipped] == ["notes.txt"]
    assert [x.path.name for x in s.unreadable] == ["broken.png"] and s.unreadable[0].reason.startswith("unreadable image")
    assert s.colour == 2 and s.colour_fraction == pytest.approx(0.4)
    assert s.width == Spread(30, 60, 200)
    assert s.height == Spread(50, 80, 100)
    assert s.short_side == Spread(30, 50, 100)
    assert s.aspect == Spread(1, 2, 3)
    assert dict(s.formats) == {"PNG": 3, "JPEG": 2}
    assert report.overlaps == ()
    assert report.unlabeled is s


def test_sizes_are_as_displayed(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored 120x40, shown turned: 40 wide, 120 high
    path = save(tmp_path / "phone.jpg", colour_image(120, 40), exif=exif)
    probe = probe_image(path)
    assert (probe.width, probe.height, probe.format) == (40, 120, "JPEG")


def test_missing_or_empty_role_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=Role.ANOMALIES):
        scan_inputs({Role.UNLABELED: [save(tmp_path / "a.png", gray_image(8, 8))], Role.ANOMALIES: [tmp_path / "empty"]})


def test_sample_is_bounded_and_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "many"
    for i in range(40):
        save(root / f"{i:03d}.png", gray_image(20 + i, 20))  # width identifies the file
    opened: list[Path] = []
    real_probe = scan_module.probe_image
    monkeypatch.setattr(scan_module, "probe_image", lambda p: opened.append(p) or real_probe(p))
    first = scan_inputs({Role.UNLABELED: [root]}, sample=10).roles[Role.UNLABELED]
    assert len(opened) == 10 and first.sampled == 10 and first.count == 40 and len(first.files) == 40
    again = scan_inputs({Role.UNLABELED: [root]}, sample=10).roles[Role.UNLABELED]
    other = scan_inputs({Role.UNLABELED: [root]}, sample=10, seed=1).roles[Role.UNLABELED]
    assert again.sizes == first.sizes and other.sizes != first.sizes
    widths = [w for w, _ in first.sizes]
    assert widths == sorted(widths) and len(set(widths)) == 10  # distinct files, in listing order
    assert len(scan_inputs({Role.UNLABELED: [root]}, sample=100).roles[Role.UNLABELED].sizes) == 40


# --- colour or grayscale -------------------------------------------------------------------------


def palette(colours: list[tuple[int, int, int]]) -> Image.Image:
    im = Image.new("P", (40, 40))
    im.putpalette([v for c in colours for v in c] + [0] * (768 - 3 * len(colours)))
    idx = np.zeros((40, 40), np.uint8)
    idx[20:] = 1
    im.putdata(idx.flatten().tolist())
    return im


def gray_with_channel_noise() -> Image.Image:
    """Grayscale from a device that adds independent noise of +-2 levels per channel."""
    arr = np.asarray(gray_image(50, 30).convert("RGB"), dtype=int) + np.random.default_rng(1).integers(-2, 3, (30, 50, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def grey_with_red_spot() -> Image.Image:
    arr = np.asarray(gray_image(100, 100).convert("RGB")).copy()
    arr[10:30, 10:30] = (220, 30, 30)  # 4% of the pixels: a coloured sticker on a gray part
    return Image.fromarray(arr)


CASES = {
    "colour.jpg": (lambda: colour_image(300, 200), {"quality": 75}, True),
    "colour.png": (lambda: colour_image(50, 30), {}, True),
    "rgba.png": (lambda: colour_image(50, 30).convert("RGBA"), {}, True),
    "palette-colour.png": (lambda: palette([(255, 0, 0), (0, 0, 255)]), {}, True),
    "spot.png": (grey_with_red_spot, {}, True),
    "gray.png": (lambda: gray_image(50, 30), {}, False),
    "gray.jpg": (lambda: gray_image(300, 200), {"quality": 75}, False),
    "gray-rgb.jpg": (lambda: gray_image(300, 200).convert("RGB"), {"quality": 40}, False),
    "gray-rgb-444.jpg": (lambda: gray_image(300, 200).convert("RGB"), {"quality": 90, "subsampling": 0}, False),
    "gray-rgb.png": (lambda: gray_image(50, 30).convert("RGB"), {}, False),
    "gray-noisy.png": (gray_with_channel_noise, {}, False),
    "palette-gray.png": (lambda: palette([(10, 10, 10), (200, 200, 200)]), {}, False),
    "deep.png": (lambda: Image.fromarray((np.arange(1200).reshape(30, 40) * 50).astype(np.uint16)), {}, False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_colour_or_grayscale(name: str, tmp_path: Path) -> None:
    make, kw, colour = CASES[name]
    assert probe_image(save(tmp_path / name, make(), **kw)).colour is colour


def test_real_photos_and_their_grayscale_copies(data_root: Path, tmp_path: Path) -> None:
    folder = data_root / "cifar10-jpeg" / "train" / "horse"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    photos = sorted(folder.glob("*.jpg"))[:60]
    for p in photos:
        with Image.open(p) as im:
            save(tmp_path / "gray" / p.name, im.convert("L").convert("RGB"), quality=75)
    report = scan_inputs({Role.UNLABELED: [folder], Role.ANOMALIES: [tmp_path / "gray"]}, sample=60)
    assert report.roles[Role.UNLABELED].colour_fraction >= 0.9  # a few CIFAR photos are themselves gray
    assert report.roles[Role.ANOMALIES].colour == 0


# --- overlaps ------------------------------------------------------------------------------------


def test_overlaps_by_resolved_path(tmp_path: Path) -> None:
    u = tmp_path / "u"
    for name in "abcde":
        save(u / f"{name}.png", gray_image(8, 8))
    save(tmp_path / "bad" / "x.png", gray_image(8, 8))
    os.symlink(u, tmp_path / "u-link")  # the same folder under another name
    roles = {
        Role.UNLABELED: [u],
        Role.NORMALS: [tmp_path / "u-link"],
        Role.ANOMALIES: [u / "a.png", tmp_path / "bad" / ".." / "u" / "b.png", tmp_path / "bad"],
    }
    report = scan_inputs(roles)
    found = {o.roles: [p.relative_to(tmp_path).as_posix() for p in o.paths] for o in report.overlaps}
    assert found == {
        (Role.UNLABELED, Role.NORMALS): [f"u/{n}.png" for n in "abcde"],
        (Role.UNLABELED, Role.ANOMALIES): ["u/a.png", "u/b.png"],
        (Role.NORMALS, Role.ANOMALIES): ["u-link/a.png", "u-link/b.png"],
    }
    assert scan_inputs({Role.UNLABELED: [u], Role.ANOMALIES: [tmp_path / "bad"]}).overlaps == ()


# --- choosing the input --------------------------------------------------------------------------


def role(name: str = Role.UNLABELED, *, sizes: list[tuple[int, int]] | None = None, colour: int = 0, count: int | None = None,
         unreadable: tuple[Skipped, ...] = ()) -> RoleScan:
    """A RoleScan as scan_inputs would make it for images of these sizes (default: 100 squares of 64 px)."""
    sizes = [(64, 64)] * 100 if sizes is None else sizes
    count = len(sizes) + len(unreadable) if count is None else count
    files = tuple(Path(f"/data{name}/{i:05d}.png") for i in range(count))
    return RoleScan(name, files, (), len(sizes) + len(unreadable), unreadable, colour, tuple(sizes), {"PNG": len(sizes)})


def report(*roles: RoleScan, overlaps=()) -> ScanReport:
    return ScanReport({r.role: r for r in roles}, tuple(overlaps), 256)


def square(side: int, n: int = 100) -> list[tuple[int, int]]:
    return [(side, side)] * n


@pytest.mark.parametrize(
    "sizes,colour,expected",
    [
        (square(28), 0, ("mnist", 1, 28)),  # MNIST-like: the paper's network exactly
        (square(20), 0, ("mnist", 1, 28)),
        (square(28), 100, ("cifar10", 3, 32)),  # colour is never 28
        (square(30), 0, ("cifar10", 1, 32)),
        (square(32), 100, ("cifar10", 3, 32)),
        (square(16), 100, ("cifar10", 3, 32)),  # at least 32
        (square(63), 100, ("cifar10", 3, 32)),
        (square(64), 100, ("lenet-64", 3, 64)),
        (square(200), 100, ("lenet-128", 3, 128)),  # never upsample by choice
        (square(100), 0, ("lenet-64", 1, 64)),
        (square(256), 100, ("lenet-256", 3, 256)),
        (square(3000), 100, ("lenet-256", 3, 256)),  # at most 256
        ([(400, 200)] * 60 + [(2000, 1000)] * 40, 100, ("lenet-128", 3, 128)),  # the median *short* side: 200
    ],
)
def test_choice_from_the_images(sizes, colour: int, expected: tuple[str, int, int]) -> None:
    choice = choose_input(report(role(sizes=sizes, colour=colour)))
    assert (choice.arch, choice.channels, choice.image_size) == expected
    assert len(choice.reasons) == 3


def test_channels_threshold_is_ten_percent() -> None:
    assert choose_input(report(role(colour=10))).channels == 3
    assert choose_input(report(role(colour=9))).channels == 1
    assert choose_input(report(role(colour=97))).reasons[0] == "colour: 97% of 100 sampled images are colour"


def test_choice_reads_the_unlabeled_role_only() -> None:
    labeled = role(Role.ANOMALIES, sizes=square(500, 10), colour=10)
    choice = choose_input(report(labeled, role(sizes=square(28))))
    assert (choice.arch, choice.channels, choice.image_size) == ("mnist", 1, 28)


def test_user_settings_are_kept() -> None:
    photos = report(role(sizes=square(300), colour=100))
    c = choose_input(photos, arch="mnist")
    assert (c.arch, c.channels, c.image_size) == ("mnist", 3, 28)  # the network's own size; channels still chosen
    assert not any("mnist:" in r for r in c.reasons) and any("mnist network's own" in r for r in c.reasons)
    c = choose_input(photos, channels=1)
    assert (c.arch, c.channels, c.image_size) == ("lenet-256", 1, 256) and len(c.reasons) == 2
    c = choose_input(photos, image_size=64)
    assert (c.arch, c.channels, c.image_size) == ("lenet-64", 3, 64)
    c = choose_input(report(role(sizes=square(28))), arch="cifar10", channels=3, image_size=40)
    assert c == InputChoice("cifar10", 3, 40, ())


def test_choice_without_a_readable_sample() -> None:
    broken = role(sizes=[], unreadable=(Skipped(Path("/x.png"), "unreadable image (bad)"),))
    c = choose_input(report(broken))
    assert (c.arch, c.channels, c.image_size) == ("mnist", 1, 28)


def test_scan_and_choose_on_real_folders(tmp_path: Path) -> None:
    for i in range(12):
        save(tmp_path / "digits" / f"{i}.png", gray_image(28, 28, seed=i))
        save(tmp_path / "photos" / f"{i}.jpg", colour_image(300, 200, seed=i), quality=80)
    digits = choose_input(scan_inputs({Role.UNLABELED: [tmp_path / "digits"]}))
    assert (digits.arch, digits.channels, digits.image_size) == ("mnist", 1, 28)
    photos = choose_input(scan_inputs({Role.UNLABELED: [tmp_path / "photos"]}))
    assert (photos.arch, photos.channels, photos.image_size) == ("lenet-128", 3, 128)


# --- warnings ------------------------------------------------------------------------------------

C64 = InputChoice("lenet-64", 3, 64, ())


def warnings_for(*roles: RoleScan, choice: InputChoice = C64, resize: Resize = Resize.SQUASH, overlaps=()) -> list[str]:
    return input_warnings(report(*roles, overlaps=overlaps), choice, resize)


def test_no_warning_for_a_clean_input() -> None:
    assert warnings_for(role(count=50), role(Role.NORMALS, sizes=square(64, 5)), role(Role.ANOMALIES, sizes=square(64, 5))) == []


def test_overlap_warnings_say_where_the_files_count(tmp_path: Path) -> None:
    u = tmp_path / "u"
    for name in "abc":
        save(u / f"{name}.png", gray_image(8, 8))
    save(tmp_path / "n" / "z.png", gray_image(8, 8))
    rep = scan_inputs({Role.UNLABELED: [u], Role.NORMALS: [tmp_path / "n", u / "c.png"], Role.ANOMALIES: [u / "a.png", u / "c.png"]})
    found = [w for w in input_warnings(rep, C64, Resize.CROP) if "in both" in w]
    assert len(found) == 3
    assert found[0].startswith("1 file is in both --unlabeled and --normals") and "count as --normals only" in found[0]
    assert found[1].startswith("2 files are in both --unlabeled and --anomalies") and "count as --anomalies only" in found[1]
    assert found[2].startswith("1 file is in both --normals and --anomalies") and "count as unlabeled only" in found[2]


@pytest.mark.parametrize("n,warned", [(49, True), (50, False)])
def test_few_unlabeled_images(n: int, warned: bool) -> None:
    found = warnings_for(role(sizes=square(64, min(n, 10)), count=n))
    assert found == ([f"only {n} image(s) in --unlabeled: with fewer than 50 the model learns little of what normal looks like"] if warned else [])


@pytest.mark.parametrize("n,warned", [(4, True), (5, False)])
def test_few_labeled_images(n: int, warned: bool) -> None:
    found = warnings_for(role(), role(Role.ANOMALIES, sizes=square(64, n)))
    assert found == (["only 4 image(s) in --anomalies: fewer than 5 labeled examples help little"] if warned else [])


VARIED = [(64, 64)] * 50 + [(128, 64)] * 30 + [(64, 192)] * 20  # aspect 1 .. 3
WIDE = [(128, 64)] * 100  # all 2:1


@pytest.mark.parametrize(
    "sizes,resize,expected",
    [
        (VARIED, Resize.SQUASH, "--resize crop (centre square) or pad (black bars) keeps their shape"),
        (VARIED, Resize.CROP, "crop cuts off a different share of each image"),
        (VARIED, Resize.PAD, "pad gives them black bars of different widths"),
        (WIDE, Resize.SQUASH, "--resize crop (centre square) or pad (black bars) keeps their shape"),
        (WIDE, Resize.CROP, None),
        (WIDE, Resize.PAD, None),
        ([(64, 64)] * 50 + [(80, 64)] * 50, Resize.SQUASH, None),  # 1.25: mild
    ],
)
def test_aspect_warnings(sizes, resize: Resize, expected: str | None) -> None:
    found = [w for w in warnings_for(role(sizes=sizes, count=100), resize=resize) if "long/short side" in w]
    assert found == [] if expected is None else (len(found) == 1 and expected in found[0])


@pytest.mark.parametrize("side,warned", [(31, True), (32, False)])
def test_small_images_warning(side: int, warned: bool) -> None:
    found = warnings_for(role(sizes=square(side)))
    message = (
        "--unlabeled images are small for the 64 px input (median short side 31 px): they will be upscaled, "
        "which adds no detail; a smaller --image-size trains faster"
    )
    assert found == ([message] if warned else [])


def test_unreadable_files_in_the_sample() -> None:
    """Warned ahead only when the sample was part of the role; a fully read role names every file later."""
    bad = tuple(Skipped(Path(f"/data/bad{i}.png"), "unreadable image (truncated)") for i in range(3))
    whole = role(Role.ANOMALIES, sizes=square(64, 7), unreadable=bad)
    assert warnings_for(role(), whole) == []
    part = replace(whole, files=whole.files + tuple(Path(f"/data/more{i}.png") for i in range(20)))
    found = warnings_for(role(), part)
    assert len(found) == 1
    assert found[0].startswith("3 of 10 sampled --anomalies files could not be read (e.g. /data/bad0.png: unreadable image (truncated))")
    assert "about 9 of all 30" in found[0]
