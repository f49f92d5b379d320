"""Finding and decoding images: every Pillow mode to the target size/channels, bad files skipped."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssd_cli.errors import InputError
from ssd_cli.images import (
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
