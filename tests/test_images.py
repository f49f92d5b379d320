"""Finding and decoding images: every Pillow mode to the target size/channels, bad files skipped."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageOps

from ssd_cli.core.config import Resize
from ssd_cli.errors import InputError
from ssd_cli.data.images import (
    decode_image,
    iter_image_batches,
    list_images,
    load_folder,
    load_images,
)


def save(path: Path, im: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def gradient(w: int, h: int) -> np.ndarray:
    return (np.arange(w * h).reshape(h, w) * 7 % 256).astype(np.uint8)


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


# --- decoding -------------------------------------------------------------------------------------


def test_grayscale_same_size_is_exact(tmp_path: Path) -> None:
    arr = gradient(28, 28)
    out = decode_image(save(tmp_path / "g.png", Image.fromarray(arr, "L")), 28, 1)
    assert out.dtype == np.uint8 and out.shape == (1, 28, 28)
    assert np.array_equal(out[0], arr)


def test_rgb_to_three_and_one_channel(tmp_path: Path) -> None:
    arr = np.stack([gradient(28, 28), 255 - gradient(28, 28), np.full((28, 28), 40, np.uint8)], axis=-1)
    path = save(tmp_path / "c.png", Image.fromarray(arr, "RGB"))
    rgb = decode_image(path, 28, 3)
    assert rgb.shape == (3, 28, 28)
    assert np.array_equal(rgb, arr.transpose(2, 0, 1))  # channel-first, channels in order
    gray = decode_image(path, 28, 1)
    assert gray.shape == (1, 28, 28)
    assert np.array_equal(gray[0], np.asarray(Image.fromarray(arr, "RGB").convert("L")))


def test_grayscale_to_three_channels(tmp_path: Path) -> None:
    arr = gradient(32, 32)
    out = decode_image(save(tmp_path / "g.png", Image.fromarray(arr, "L")), 32, 3)
    assert out.shape == (3, 32, 32)
    assert all(np.array_equal(out[i], arr) for i in range(3))


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    arr = np.zeros((28, 28, 4), np.uint8)
    arr[..., 0], arr[..., 1], arr[..., 2] = 200, 100, 50
    arr[..., 3] = gradient(28, 28)  # varying transparency must not leak into the colours
    out = decode_image(save(tmp_path / "a.png", Image.fromarray(arr, "RGBA")), 28, 3)
    assert out.shape == (3, 28, 28)
    assert (out[0] == 200).all() and (out[1] == 100).all() and (out[2] == 50).all()


def test_palette_image_uses_palette_colours(tmp_path: Path) -> None:
    im = Image.new("P", (28, 28))
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    idx = np.zeros((28, 28), np.uint8)
    idx[:14] = 1
    idx[14:] = 2
    im.putdata(idx.flatten().tolist())
    path = save(tmp_path / "p.png", im)
    assert Image.open(path).mode == "P"
    out = decode_image(path, 28, 3)
    assert (out[:, :14] == np.array([255, 0, 0])[:, None, None]).all()
    assert (out[:, 14:] == np.array([0, 0, 255])[:, None, None]).all()
    gray = decode_image(path, 28, 1)
    assert gray[0, 0, 0] != gray[0, 27, 0]  # not the palette indices 1 and 2
    assert gray[0, 0, 0] > 2 and gray[0, 27, 0] > 2


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.zeros((28, 28), np.uint16)
    arr[0, 0], arr[0, 1], arr[0, 2], arr[0, 3] = 65535, 32768, 16384, 257
    path = save(tmp_path / "deep.png", Image.fromarray(arr))
    assert Image.open(path).mode.startswith("I")
    out = decode_image(path, 28, 1)
    assert out[0, 0, 0] == 255
    assert abs(int(out[0, 0, 1]) - 128) <= 1  # Pillow's own conversion would clip this to 255
    assert abs(int(out[0, 0, 2]) - 64) <= 1
    assert out[0, 0, 3] == 1
    assert out[0, 5, 5] == 0
    rgb = decode_image(path, 28, 3)
    assert rgb.shape == (3, 28, 28) and rgb[0, 0, 0] == 255 and abs(int(rgb[2, 0, 1]) - 128) <= 1


@pytest.mark.parametrize("w,h", [(50, 40), (10, 10), (28, 100), (200, 200)])
@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_other_sizes_are_resized(w: int, h: int, size: int, channels: int, tmp_path: Path) -> None:
    arr = np.full((h, w), 90, np.uint8)
    out = decode_image(save(tmp_path / "s.png", Image.fromarray(arr, "L")), size, channels)
    assert out.shape == (channels, size, size)
    assert (out == 90).all()  # a constant image stays constant through the resize


def test_jpeg_and_bmp_decode(tmp_path: Path) -> None:
    arr = np.full((300, 300, 3), 128, np.uint8)
    jpg = decode_image(save(tmp_path / "big.jpg", Image.fromarray(arr, "RGB"), quality=95), 28, 3)
    assert jpg.shape == (3, 28, 28) and np.abs(jpg.astype(int) - 128).max() <= 3
    bmp = decode_image(save(tmp_path / "x.bmp", Image.fromarray(gradient(28, 28), "L")), 28, 1)
    assert np.array_equal(bmp[0], gradient(28, 28))


# --- listing and skipping ------------------------------------------------------------------------


@pytest.fixture()
def messy(tmp_path: Path) -> Path:
    """Good images, a truncated PNG, random bytes named .png, a text file, hidden files, a subfolder."""
    root = tmp_path / "messy"
    for i in range(3):
        save(root / f"good{i}.png", Image.fromarray(np.full((28, 28), 10 * (i + 1), np.uint8), "L"))
    save(root / "sub" / "deeper.png", Image.fromarray(np.full((28, 28), 99, np.uint8), "L"))
    full = png_bytes(Image.fromarray(gradient(64, 64), "L"))
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    (root / "random.png").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)))
    (root / "notes.txt").write_text("not an image")
    save(root / ".hidden.png", Image.fromarray(np.zeros((28, 28), np.uint8), "L"))
    save(root / ".cache" / "thumb.png", Image.fromarray(np.zeros((28, 28), np.uint8), "L"))
    return root


def test_list_images_recursive_sorted_and_skips(messy: Path) -> None:
    listing = list_images([messy])
    names = [p.relative_to(messy).as_posix() for p in listing.files]
    assert names == sorted(names)
    assert set(names) == {"good0.png", "good1.png", "good2.png", "random.png", "sub/deeper.png", "truncated.png"}
    assert [(s.path.name, s.reason) for s in listing.skipped] == [("notes.txt", "not an image file")]
    assert not any(".hidden" in n or ".cache" in n for n in names)


def test_unreadable_files_are_skipped_with_reasons(messy: Path) -> None:
    batch = load_folder([messy], 28, 1, what="--unlabeled")
    assert [p.name for p in batch.paths] == ["good0.png", "good1.png", "good2.png", "deeper.png"]
    assert batch.images.shape == (4, 1, 28, 28)
    reasons = {s.path.name: s.reason for s in batch.skipped}
    assert set(reasons) == {"notes.txt", "truncated.png", "random.png"}
    assert reasons["truncated.png"].startswith("unreadable image")
    assert reasons["random.png"].startswith("unreadable image")
    assert all("\n" not in r for r in reasons.values())


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        list_images([tmp_path / "nope"], what="--unlabeled")


def test_empty_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        list_images([tmp_path / "empty"])


def test_folder_without_images_raises(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    (tmp_path / "docs" / ".b.png").write_bytes(b"")  # hidden: does not count
    with pytest.raises(InputError, match="no image files"):
        list_images([tmp_path / "docs"])


def test_all_unreadable_folder_raises(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    full = png_bytes(Image.fromarray(gradient(28, 28), "L"))
    (root / "a.png").write_bytes(full[:40])
    (root / "b.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="none of the 2"):
        load_folder([root], 28, 1, what="--unlabeled")


def test_single_file_path_is_accepted(messy: Path) -> None:
    assert list_images([messy / "good1.png"]).files == [messy / "good1.png"]


def test_iter_image_batches_keeps_order_and_sizes(tmp_path: Path) -> None:
    files = []
    for i in range(10):
        files.append(save(tmp_path / f"{9 - i:02d}.png", Image.fromarray(np.full((28, 28), i * 20, np.uint8), "L")))
    full = png_bytes(Image.fromarray(gradient(28, 28), "L"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(full[:50])
    order = files[:4] + [bad] + files[4:]  # not sorted by name: the given order must be kept
    batches = list(iter_image_batches(order, 28, 1, batch_size=3, workers=3))
    assert [len(b.paths) + len(b.skipped) for b in batches] == [3, 3, 3, 2]
    assert [len(b.images) for b in batches] == [3, 2, 3, 2]
    assert [p for b in batches for p in b.paths] == files
    assert [s.path for b in batches for s in b.skipped] == [bad]
    values = [int(img[0, 0, 0]) for b in batches for img in b.images]
    assert values == [i * 20 for i in range(10)]  # each image stays with its path
    loaded = load_images(order, 28, 1, workers=2)
    assert loaded.paths == files and [int(v) for v in loaded.images[:, 0, 0, 0]] == values


def test_iter_image_batches_empty() -> None:
    assert list(iter_image_batches([], 28, 1)) == []
    assert load_images([], 28, 1).images.shape == (0, 1, 28, 28)


# --- fitting to the square input: squash, crop, pad ----------------------------------------------

RED, GREEN, BLUE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0)


def bands(w: int, h: int, colours: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """An h x w RGB image of vertical bands of equal width, left to right."""
    arr = np.zeros((h, w, 3), np.uint8)
    step = w // len(colours)
    for i, c in enumerate(colours):
        arr[:, i * step : (i + 1) * step] = c
    return arr


def near(pixel: np.ndarray, colour: tuple[int, int, int], tol: int = 12) -> bool:
    return bool(np.abs(pixel.astype(int) - np.array(colour)).max() <= tol)


def region_is(out: np.ndarray, rows: slice, cols: slice, colour: tuple[int, int, int], tol: int = 12) -> bool:
    """Every pixel of out[:, rows, cols] (channel-first) is within tol of colour."""
    block = out[:, rows, cols].reshape(3, -1).T
    return bool(np.abs(block.astype(int) - np.array(colour)).max() <= tol)


@pytest.fixture()
def wide_bands(tmp_path: Path) -> Path:
    """96x32: red, green and blue bands of 32x32 each."""
    return save(tmp_path / "wide.png", Image.fromarray(bands(96, 32, (RED, GREEN, BLUE))))


def test_crop_keeps_the_centre_square(wide_bands: Path) -> None:
    out = decode_image(wide_bands, 48, 3, Resize.CROP)
    assert out.shape == (3, 48, 48)
    assert region_is(out, slice(None), slice(3, -3), GREEN)  # the side bands are cut off
    assert not (near(out[:, 24, 0], RED) or near(out[:, 24, 47], BLUE))
    same = decode_image(wide_bands, 32, 3, Resize.CROP)  # no scaling: exactly the centre pixels
    assert region_is(same, slice(None), slice(None), GREEN, tol=0)


def test_pad_keeps_everything_with_black_bars(wide_bands: Path) -> None:
    out = decode_image(wide_bands, 48, 3, Resize.PAD)
    # 96x32 -> 48x16 content, centred: rows 16..31, black above and below
    assert region_is(out, slice(0, 16), slice(None), BLACK, tol=0)
    assert region_is(out, slice(32, 48), slice(None), BLACK, tol=0)
    assert region_is(out, slice(17, 31), slice(1, 15), RED)
    assert region_is(out, slice(17, 31), slice(17, 31), GREEN)
    assert region_is(out, slice(17, 31), slice(33, 47), BLUE)


def test_pad_tall_image_gets_side_bars(tmp_path: Path) -> None:
    tall = bands(96, 32, (RED, GREEN, BLUE)).transpose(1, 0, 2).copy()  # 32 wide, 96 high: red on top
    out = decode_image(save(tmp_path / "tall.png", Image.fromarray(tall)), 48, 3, Resize.PAD)
    assert region_is(out, slice(None), slice(0, 16), BLACK, tol=0)
    assert region_is(out, slice(None), slice(32, 48), BLACK, tol=0)
    assert region_is(out, slice(1, 15), slice(17, 31), RED) and region_is(out, slice(33, 47), slice(17, 31), BLUE)


def test_squash_keeps_the_bands_squeezed(wide_bands: Path) -> None:
    out = decode_image(wide_bands, 48, 3, Resize.SQUASH)
    assert region_is(out, slice(None), slice(0, 15), RED)
    assert region_is(out, slice(None), slice(17, 31), GREEN)
    assert region_is(out, slice(None), slice(33, 48), BLUE)
    assert np.array_equal(out, decode_image(wide_bands, 48, 3))  # squash is the default


def test_square_image_is_the_same_under_every_policy(tmp_path: Path) -> None:
    arr = np.stack([gradient(40, 40), 255 - gradient(40, 40), np.full((40, 40), 90, np.uint8)], axis=-1)
    path = save(tmp_path / "sq.png", Image.fromarray(arr))
    outs = [decode_image(path, 28, 3, policy) for policy in Resize]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_resize_policy_reaches_every_loader(wide_bands: Path) -> None:
    crop = decode_image(wide_bands, 48, 3, Resize.CROP)
    assert np.array_equal(load_folder([wide_bands.parent], 48, 3, what="x", resize=Resize.CROP).images[0].numpy(), crop)
    assert np.array_equal(load_images([wide_bands], 48, 3, resize=Resize.CROP).images[0].numpy(), crop)
    (batch,) = iter_image_batches([wide_bands], 48, 3, resize=Resize.PAD)
    assert np.array_equal(batch.images[0].numpy(), decode_image(wide_bands, 48, 3, Resize.PAD))
    assert not np.array_equal(load_images([wide_bands], 48, 3).images[0].numpy(), crop)  # default: squash


# --- EXIF orientation ----------------------------------------------------------------------------


def jpeg_with_orientation(path: Path, arr: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return save(path, Image.fromarray(arr), quality=95, exif=exif)


def test_exif_rotated_jpeg_comes_out_as_displayed(tmp_path: Path) -> None:
    # Stored 64x32 with red left, blue right; orientation 6 = shown turned 90 degrees clockwise.
    path = jpeg_with_orientation(tmp_path / "phone.jpg", bands(64, 32, (RED, BLUE)), 6)
    out = decode_image(path, 32, 3)
    assert region_is(out, slice(0, 14), slice(None), RED, tol=20)
    assert region_is(out, slice(18, 32), slice(None), BLUE, tol=20)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("policy", list(Resize))
def test_every_orientation_matches_pillows_exif_transpose(orientation: int, policy: Resize, tmp_path: Path) -> None:
    rng = np.random.default_rng(orientation)
    arr = np.kron(rng.integers(0, 256, (3, 5, 3)), np.ones((16, 16, 1))).astype(np.uint8)  # 80x48, 16-px blocks
    path = jpeg_with_orientation(tmp_path / "o.jpg", arr, orientation)
    with Image.open(path) as im:
        stored = save(tmp_path / "stored.png", im.convert("RGB"))
        upright = save(tmp_path / "upright.png", ImageOps.exif_transpose(im))
    got = decode_image(path, 44, 3, policy).astype(int)
    assert np.abs(got - decode_image(upright, 44, 3, policy).astype(int)).mean() < 1.0
    assert np.abs(got - decode_image(stored, 44, 3, policy).astype(int)).mean() > 10  # turning matters here


# --- reduced decoding of large photos ------------------------------------------------------------


@pytest.fixture(scope="module")
def large_photos(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Mosaics of real CIFAR-10 photos upscaled 4x: a 2557x1915 JPEG, the same stored turned with
    EXIF orientation 6 (as phones do), and a 1277x957 PNG. Odd sizes on purpose: the reduced
    JPEG's last row and column are partly padding."""
    folder = data_root / "cifar10-jpeg" / "train" / "cat"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    tiles = [np.asarray(Image.open(f).convert("RGB")) for f in sorted(folder.glob("*.jpg"))[:300]]
    mosaic = np.concatenate([np.concatenate(tiles[r * 20 : (r + 1) * 20], axis=1) for r in range(15)], axis=0)
    big = Image.fromarray(mosaic).resize((640 * 4, 480 * 4), Image.Resampling.BICUBIC)
    tmp = tmp_path_factory.mktemp("large")
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    return {
        "jpeg": save(tmp / "big.jpg", big.crop((0, 0, 2557, 1915)), quality=90),
        "jpeg-turned": save(tmp / "turned.jpg", big.crop((0, 0, 2557, 1915)).transpose(Image.Transpose.ROTATE_90), quality=90, exif=exif),
        "png": save(tmp / "big.png", big.crop((3, 2, 1280, 959)), compress_level=1),
    }


def full_decode_fit(path: Path, size: int, mode: str, policy: Resize) -> np.ndarray:
    """The reference: decode every pixel, turn as displayed, one bilinear resample of the exact region."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert(mode)
    w, h = im.size
    side = min(w, h)
    if policy is Resize.SQUASH:
        out = im.resize((size, size), Image.Resampling.BILINEAR)
    elif policy is Resize.CROP:
        left, top = (w - side) / 2, (h - side) / 2
        out = im.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    else:
        inner = (round(w * size / max(w, h)), round(h * size / max(w, h)))
        out = Image.new(mode, (size, size))
        out.paste(im.resize(inner, Image.Resampling.BILINEAR), ((size - inner[0]) // 2, (size - inner[1]) // 2))
    arr = np.asarray(out)
    return arr[None] if mode == "L" else arr.transpose(2, 0, 1)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["jpeg", "jpeg-turned", "png"])
@pytest.mark.parametrize("size", [32, 128])
def test_reduced_decoding_stays_close_to_a_full_decode(large_photos: dict[str, Path], kind: str, size: int) -> None:
    for policy in Resize:
        for channels, mode in ((3, "RGB"), (1, "L")):
            got = decode_image(large_photos[kind], size, channels, policy)
            want = full_decode_fit(large_photos[kind], size, mode, policy)
            assert got.shape == want.shape == (channels, size, size)
            diff = np.abs(got.astype(int) - want.astype(int)).mean()
            assert diff < 4, f"{kind} {policy.value} {channels}ch {size}px: mean abs diff {diff:.2f}"
