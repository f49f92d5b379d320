"""Pixel-level anomaly maps and mask-based evaluation: patch scores spread back to pixels, maps put
back into each image's own geometry, pixel AUROC and AUPRO against plain brute force, masks found
and checked, and `ssd score --maps` / `ssd evaluate --masks` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssd_cli.api import Detector
from ssd_cli.core.config import Resize
from ssd_cli.core.maps import TRUNCATE, default_sigma, pixel_maps
from ssd_cli.core.patches import PatchSpec
from ssd_cli.data.images import decode_mask, displayed_size, fit_image, unfit_map
from ssd_cli.data.masks import find_masks, read_masks
from ssd_cli.errors import ExitCode, InputError, UsageError
from ssd_cli.io.modelfile import save_model
from ssd_cli.metrics import aupro, pixel_auroc

from conftest import ok, one_line_error, photos, ssd

# ---------------------------------------------------------------- grids to maps


def brute_patch_mean(grid: np.ndarray, spec: PatchSpec) -> np.ndarray:
    """Each pixel: the plain mean of the scores of every patch that contains it."""
    out = np.zeros((spec.image_size, spec.image_size))
    for y in range(spec.image_size):
        for x in range(spec.image_size):
            covering = [
                grid[i, j]
                for i in range(spec.grid)
                for j in range(spec.grid)
                if i * spec.stride <= y < i * spec.stride + spec.patch_size and j * spec.stride <= x < j * spec.stride + spec.patch_size
            ]
            out[y, x] = sum(covering) / len(covering)
    return out


def brute_gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """A 2-d Gaussian over the pixels inside the image only (weights renormalised at the border)."""
    size, reach = image.shape[0], math.ceil(TRUNCATE * sigma)
    out = np.zeros_like(image)
    for y in range(size):
        for x in range(size):
            total = weights = 0.0
            for v in range(max(0, y - reach), min(size, y + reach + 1)):
                for u in range(max(0, x - reach), min(size, x + reach + 1)):
                    if abs(v - y) <= reach and abs(u - x) <= reach:
                        w = math.exp(-((v - y) ** 2 + (u - x) ** 2) / (2 * sigma**2))
                        total, weights = total + w * image[v, u], weights + w
            out[y, x] = total / weights
    return out


def test_a_patch_score_spreads_to_the_pixels_it_covers() -> None:
    spec = PatchSpec(16, 8, 4)  # a 3 x 3 grid; inner pixels lie in up to 2 x 2 patches
    grid = np.zeros((3, 3))
    grid[1, 2] = 1.0  # rows 4..11, columns 8..15
    spread = pixel_maps(grid[None], spec, sigma=0)[0]
    assert spread.shape == (16, 16) and spread.dtype == np.float32
    assert np.count_nonzero(spread) == 8 * 8 and np.all(spread[4:12, 8:16] > 0)
    assert spread[4:8, 12:16] == pytest.approx(np.full((4, 4), 0.5))  # rows in two patches, columns in one
    assert spread[8:12, 8:12] == pytest.approx(np.full((4, 4), 0.25))  # in four patches, one of them hot
    np.testing.assert_allclose(spread, brute_patch_mean(grid, spec), atol=1e-6)
    rng = np.random.default_rng(0)
    for spec in (PatchSpec(16, 8, 4), PatchSpec(12, 4, 4), PatchSpec(10, 4, 2)):
        grids = rng.random((2, spec.grid, spec.grid))
        np.testing.assert_allclose(pixel_maps(grids, spec, sigma=0), [brute_patch_mean(g, spec) for g in grids], atol=1e-6)


def test_maps_are_smoothed_patch_means_that_stay_within_the_patch_scores() -> None:
    spec = PatchSpec(20, 8, 4)
    assert default_sigma(spec) == 2.0
    rng = np.random.default_rng(1)
    grids = rng.gamma(2.0, 1.0, (3, spec.grid, spec.grid))
    maps = pixel_maps(grids, spec)
    assert maps.shape == (3, 20, 20) and maps.dtype == np.float32
    for g, m in zip(grids, maps):
        np.testing.assert_allclose(m, brute_gaussian(brute_patch_mean(g, spec), 2.0), rtol=1e-5)
        assert g.min() - 1e-5 <= m.min() and m.max() <= g.max() + 1e-5  # a weighted mean: never above the image's score
    np.testing.assert_allclose(pixel_maps(np.full((1, 4, 4), 0.7), spec), np.full((1, 20, 20), 0.7), rtol=1e-6)
    hot = np.zeros((1, 4, 4))
    hot[0, 2, 1] = 5.0  # rows 8..15, columns 4..11
    assert np.unravel_index(pixel_maps(hot, spec)[0].argmax(), (20, 20)) in {(y, x) for y in (11, 12) for x in (7, 8)}
    with pytest.raises(ValueError, match="4 x 4"):
        pixel_maps(np.zeros((1, 3, 3)), spec)


# ---------------------------------------------------------------- maps back onto the images


def bright_square(wh: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    arr = np.full((wh[1], wh[0]), 30, dtype=np.uint8)
    arr[box[1] : box[3], box[0] : box[2]] = 230
    return Image.fromarray(arr)


@pytest.mark.parametrize("resize", list(Resize))
def test_a_map_goes_back_where_its_pixels_came_from(resize: Resize) -> None:
    """What the model saw at (x, y) of its input lies, after unfit_map, where it was in the image."""
    im = bright_square((90, 60), (40, 20, 56, 36))  # inside the centre square, so every policy sees it
    seen = fit_image(im, 32, 1, resize)[0].astype(np.float32)
    back = unfit_map(seen, im.size, resize)
    assert back.shape == (60, 90) and back.dtype == np.float32
    unseen = np.isnan(back)
    if resize is Resize.CROP:  # the centre 60 x 60 square only
        assert unseen[:, :15].all() and unseen[:, 75:].all() and not unseen[:, 15:75].any()
    else:
        assert not unseen.any()
    assert back[26:30, 45:51].min() > 180 and back[:, 15:75][np.asarray(im)[:, 15:75] == 30].mean() < 60
    assert np.corrcoef(back[~unseen], np.asarray(im, dtype=np.float32)[~unseen])[0, 1] > 0.9


def test_pad_bars_are_dropped_and_crop_margins_stay_unseen() -> None:
    values = np.full((8, 8), 99.0, dtype=np.float32)
    values[2:6, :] = np.arange(8, dtype=np.float32)  # a 20 x 10 image fills rows 2..5 of the padded input
    back = unfit_map(values, (20, 10), Resize.PAD)
    assert back.shape == (10, 20) and back.max() <= 7 and back[:, 0].mean() < back[:, -1].mean()
    crop = unfit_map(np.arange(100, dtype=np.float32).reshape(10, 10), (20, 10), Resize.CROP)
    assert np.isnan(crop[:, :5]).all() and np.isnan(crop[:, 15:]).all()
    np.testing.assert_array_equal(crop[:, 5:15], np.arange(100).reshape(10, 10))  # same size: copied as is


def test_masks_are_fitted_like_their_images_by_nearest_neighbour(tmp_path: Path) -> None:
    mask = np.zeros((40, 60), dtype=np.uint8)
    mask[10:20, 30:36] = 255
    mask[30:, :12] = 127  # grey under 128 is not defect
    Image.fromarray(mask).save(tmp_path / "m.png")
    squashed = decode_mask(tmp_path / "m.png", 20, Resize.SQUASH)
    assert squashed.dtype == np.bool_ and squashed.shape == (20, 20)
    expected = np.zeros((20, 20), dtype=bool)
    expected[5:10, 10:12] = True
    np.testing.assert_array_equal(squashed, expected)
    padded = decode_mask(tmp_path / "m.png", 30, Resize.PAD)  # 60 x 40 -> 30 x 20, bars above and below
    assert not padded[:5].any() and not padded[25:].any() and padded[10:15, 15:18].all() and padded.sum() == 15
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned by 90 degrees
    Image.new("L", (60, 40)).save(tmp_path / "turned.jpg", exif=exif.tobytes())
    assert displayed_size(tmp_path / "turned.jpg") == (40, 60) and displayed_size(tmp_path / "m.png") == (60, 40)


# ---------------------------------------------------------------- pixel metrics against brute force


def regions_8(mask: np.ndarray) -> list[set[tuple[int, int]]]:
    """Connected defect regions, pixels touching by an edge or a corner, by a plain flood fill."""
    seen: set[tuple[int, int]] = set()
    regions = []
    for start in zip(*np.nonzero(mask)):
        if start in seen:
            continue
        region, todo = set(), [start]
        seen.add(start)
        while todo:
            y, x = todo.pop()
            region.add((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    n = (y + dy, x + dx)
                    if 0 <= n[0] < mask.shape[0] and 0 <= n[1] < mask.shape[1] and mask[n] and n not in seen:
                        seen.add(n)
                        todo.append(n)
        regions.append(region)
    return regions


def brute_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    pos, neg = maps[masks], maps[~masks]
    wins = sum(float(np.sum(p > neg)) + 0.5 * float(np.sum(p == neg)) for p in pos)
    return wins / (len(pos) * len(neg))


def brute_aupro(maps: np.ndarray, masks: np.ndarray, limit: float) -> float:
    """At every threshold, the share of normal pixels at or above it and the mean over regions of the
    share of each region's pixels at or above it; trapezoids up to limit, interpolated there."""
    regions = [(i, r) for i in range(len(masks)) for r in regions_8(masks[i])]
    normal = maps[~masks]
    points = [(0.0, 0.0)]
    for t in sorted(set(maps.ravel().tolist()), reverse=True):
        fpr = float(np.mean(normal >= t))
        pro = sum(np.mean([maps[i][p] >= t for p in r]) for i, r in regions) / len(regions)
        points.append((fpr, float(pro)))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1, x1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0), limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def random_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = np.zeros((4, 12, 12), dtype=bool)
    for i in range(1, 4):  # image 0 is normal
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, 10, 2)
            h, w = rng.integers(1, 4, 2)
            masks[i, y : y + h, x : x + w] = True
    masks[3, 0, 0] = masks[3, 1, 1] = True  # corner to corner: one region with 8-connectivity
    maps = np.round(rng.random(masks.shape) + 0.6 * masks, 1)  # rounded, so that many scores tie
    return maps, masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_auroc_and_aupro_match_brute_force(seed: int) -> None:
    maps, masks = random_case(seed)
    assert pixel_auroc(maps, masks) == pytest.approx(brute_auroc(maps, masks), abs=1e-12)
    for limit in (0.3, 0.05, 1.0):
        assert aupro(maps, masks, limit) == pytest.approx(brute_aupro(maps, masks, limit), abs=1e-9)


def test_aupro_weighs_every_region_alike_and_rejects_maps_without_defects() -> None:
    masks = np.zeros((1, 10, 10), dtype=bool)
    masks[0, :5, :5] = True  # a large region, found
    masks[0, 8, 8] = True  # a one-pixel region, missed
    maps = np.where(masks, 1.0, 0.2)
    maps[0, 8, 8] = 0.0  # below every normal pixel: found only at FPR 1
    assert pixel_auroc(maps, masks) == pytest.approx(25 / 26)  # 25 of 26 defect pixels above every normal one
    assert aupro(maps, masks) == pytest.approx(0.5)  # but only one of the two regions
    with pytest.raises(InputError, match="no defect"):
        aupro(maps, np.zeros_like(masks))
    with pytest.raises(InputError, match="N x H x W"):
        pixel_auroc(maps[0], masks[0])


# ---------------------------------------------------------------- finding masks


def save_grey(path: Path, wh: tuple[int, int], value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", wh, value).save(path)
    return path


def test_masks_are_found_at_the_same_relative_path(tmp_path: Path) -> None:
    bad, masks = tmp_path / "bad", tmp_path / "masks"
    a = save_grey(bad / "crack" / "000.png", (20, 10))
    b = save_grey(bad / "hole" / "000.jpg", (20, 10))
    c = save_grey(bad / "001.png", (20, 10))
    single = save_grey(tmp_path / "elsewhere" / "002.png", (20, 10))
    ma = save_grey(masks / "crack" / "000.bmp", (20, 10), 255)  # another image extension
    mb = save_grey(masks / "hole" / "000_mask.png", (20, 10), 255)  # MVTec AD's naming
    ms = save_grey(masks / "002.png", (20, 10), 255)  # a file given directly: its name
    save_grey(masks / "crack" / "999.png", (20, 10), 255)  # a mask without an image is ignored
    found = find_masks([bad, single], masks)
    assert found == {a: ma, b: mb, single: ms} and c not in found
    fitted = read_masks(found, 8, Resize.SQUASH)
    assert set(fitted) == {a, b, single} and all(m.shape == (8, 8) and m.all() for m in fitted.values())
    save_grey(masks / "crack" / "000_mask.png", (20, 10), 255)
    with pytest.raises(InputError, match="2 masks for"):
        find_masks([bad], masks)
    with pytest.raises(InputError, match="not a folder"):
        find_masks([bad], tmp_path / "absent")


def test_a_mask_of_another_size_is_refused_naming_both_sizes(tmp_path: Path) -> None:
    image = save_grey(tmp_path / "bad" / "x.png", (20, 10))
    mask = save_grey(tmp_path / "masks" / "x.png", (10, 20), 255)
    with pytest.raises(InputError) as err:
        read_masks({image: mask}, 8, Resize.SQUASH)
    assert "x.png" in str(err.value) and "10x20" in str(err.value) and "20x10" in str(err.value) and "\n" not in str(err.value)
    mask.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot be read"):
        read_masks({image: mask}, 8, Resize.SQUASH)


# ---------------------------------------------------------------- the API and the CLI with a patch model


def spotted(folder: Path, n: int, masks: Path | None, *, seed: int, wh: tuple[int, int] = (72, 64)) -> Path:
    """Smooth pictures, each with a bright square, and (optionally) its mask at the same name."""
    photos(folder, n, wh, colour=False, seed=seed)
    rng = np.random.default_rng(seed)
    for f in sorted(folder.glob("*.png")):
        arr = np.asarray(Image.open(f)).copy()
        y, x = rng.integers(4, wh[1] - 16), rng.integers(4, wh[0] - 16)
        arr[y : y + 10, x : x + 10] = 255
        Image.fromarray(arr).save(f)
        if masks is not None:
            m = np.zeros_like(arr)
            m[y : y + 10, x : x + 10] = 255
            masks.mkdir(parents=True, exist_ok=True)
            Image.fromarray(m).save(masks / f.name)
    return folder


@pytest.fixture(scope="module")
def patch_model(tmp_path_factory) -> Path:
    """A tiny patch-level model: 64 px inputs, 32 px patches at stride 8 (a 5 x 5 grid), seconds to train."""
    root = tmp_path_factory.mktemp("maps")
    train = photos(root / "train", 12, (72, 64), colour=False, seed=3)
    out = root / "patch.safetensors"
    Detector(
        device="cpu", image_size=64, patch_size=32, patch_stride=8, patches_per_image=1, epochs=1, pretrain_epochs=1, batch_size=16
    ).fit(train).save(out)
    return out


@pytest.fixture(scope="module")
def labeled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labeled")
    photos(root / "normal", 4, (72, 64), colour=False, seed=5)
    spotted(root / "bad", 3, root / "masks", seed=6)
    spotted(root / "bad" / "more", 2, None, seed=7)  # anomalous without masks
    return root


@pytest.fixture(scope="module")
def whole_model(sample_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "whole.safetensors"
    save_model(out, sample_model)
    return out


def test_score_maps_are_the_grids_spread_at_input_resolution(patch_model: Path, labeled: Path) -> None:
    det = Detector.load(patch_model, device="cpu")
    assert det.has_maps
    got = det.score_maps(labeled / "bad")
    scores = det.score(labeled / "bad")
    assert len(got) == 5 and got.maps.shape == (5, 64, 64) and got.maps.dtype == np.float32
    assert got.paths == [r.path for r in scores] and got.skipped == []
    assert scores.maps is not None and scores.maps.shape == (5, 5, 5)
    np.testing.assert_array_equal(got.maps, pixel_maps(scores.maps, PatchSpec(64, 32, 8)))
    assert np.all(got.maps.reshape(5, -1).max(axis=1) <= scores.maps.reshape(5, -1).max(axis=1) + 1e-5)  # means of patch scores


def test_whole_image_models_have_no_maps(whole_model: Path, labeled: Path, sample_dir: Path, tmp_path: Path) -> None:
    det = Detector.load(whole_model, device="cpu")
    assert not det.has_maps
    with pytest.raises(UsageError, match="whole-image model") as err:
        det.score_maps(sample_dir / "incoming")
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="whole-image model"):
        det.evaluate(sample_dir / "normal", sample_dir / "anomalies", masks=labeled / "masks")
    one_line_error(ssd("score", whole_model, sample_dir / "incoming", "--maps", tmp_path / "maps", "--device", "cpu"), ExitCode.USAGE, "--maps", "whole-image")
    assert not (tmp_path / "maps").exists()
    result = ssd("evaluate", whole_model, "--normal", sample_dir / "normal", "--anomalous", sample_dir / "anomalies", "--masks", labeled / "masks", "--device", "cpu")
    one_line_error(result, ExitCode.USAGE, "--masks", "whole-image")


def test_evaluate_with_masks_gives_pixel_metrics_of_the_masked_images(patch_model: Path, labeled: Path, tmp_path: Path) -> None:
    det = Detector.load(patch_model, device="cpu")
    result = det.evaluate(labeled / "normal", labeled / "bad", masks=labeled / "masks")
    pixel = result.pixel
    assert pixel is not None and (pixel.n_masked, pixel.n_anomalous_without_mask, pixel.fpr_limit) == (3, 2, 0.3)
    assert result.metrics.n_anomalous == 5  # the two without masks still count at image level
    # the same numbers from the maps and masks directly
    normal = det.score_maps(labeled / "normal").maps
    masked = det.score_maps(sorted((labeled / "bad").glob("*.png")))
    truth = np.stack([np.zeros((64, 64), bool)] * len(normal) + [decode_mask(labeled / "masks" / p.name, 64, Resize.SQUASH) for p in masked.paths])
    maps = np.concatenate([normal, masked.maps])
    assert pixel.auroc == pytest.approx(pixel_auroc(maps, truth)) and pixel.aupro == pytest.approx(aupro(maps, truth))
    assert result.to_dict()["pixel"] == pixel.to_dict()
    assert "pixel" not in det.evaluate(labeled / "normal", labeled / "bad").to_dict()
    with pytest.raises(InputError, match="no mask in .* belongs to an anomalous image"):
        det.evaluate(labeled / "normal", labeled / "bad", masks=tmp_path)


def test_cli_evaluate_masks_table_json_and_report(patch_model: Path, labeled: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "e.json", tmp_path / "e.html"
    result = ssd(
        "evaluate", patch_model, "--normal", labeled / "normal", "--anomalous", labeled / "bad", "--masks", labeled / "masks",
        "--output", out, "--report", report, "--device", "cpu",
    )  # fmt: skip
    ok(result)
    text = result.output
    assert "pixel AUROC" in text and "pixel AUPRO (FPR <= 0.3)" in text and "3 / 2" in text
    assert "warning: 2 anomalous image(s) have no mask" in text
    pixel = json.loads(out.read_text())["pixel"]
    assert set(pixel) == {"auroc", "aupro", "fpr_limit", "n_masked", "n_anomalous_without_mask"}
    assert (pixel["n_masked"], pixel["n_anomalous_without_mask"], pixel["fpr_limit"]) == (3, 2, 0.3)
    page = report.read_text()
    assert f'id="pixel-auroc">{pixel["auroc"]:.4f}<' in page and f'id="pixel-aupro">{pixel["aupro"]:.4f}<' in page
    assert 'id="heat-legend"' in page  # the thumbnails carry their maps
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n")
    one_line_error(ssd("evaluate", patch_model, "--labels", labels, "--masks", labeled / "masks"), ExitCode.USAGE, "--masks goes with")


def test_cli_evaluate_refuses_a_mask_of_another_size(patch_model: Path, labeled: Path, tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    save_grey(masks / "000.png", (64, 72), 255)  # the images are 72 x 64
    result = ssd("evaluate", patch_model, "--normal", labeled / "normal", "--anomalous", labeled / "bad", "--masks", masks, "--device", "cpu")
    one_line_error(result, ExitCode.BAD_INPUT, "000.png", "64x72", "72x64")


def test_cli_score_maps_one_png_per_image_at_its_size(patch_model: Path, labeled: Path, tmp_path: Path) -> None:
    odd = photos(tmp_path / "odd", 2, (90, 50), colour=False, seed=9)  # another size, and names that repeat normal/'s
    folder = tmp_path / "maps"
    inputs = [labeled / "normal", odd]
    ok(ssd("score", patch_model, *inputs, "--maps", folder, "--output", tmp_path / "s.csv", "--device", "cpu"))
    with open(tmp_path / "s.csv", newline="") as f:
        ranked = [line.split(",")[0] for line in f.read().splitlines()[1:]]
    written = sorted(p.name for p in folder.iterdir())
    assert written == [f"{rank:04d}-{Path(path).stem}.png" for rank, path in enumerate(ranked, 1)]  # RANK-NAME, unique
    assert len(set(Path(p).name for p in ranked)) < len(written)  # two inputs share a name, their maps do not
    for name, path in zip(written, ranked):
        with Image.open(folder / name) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == Image.open(path).size
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    one_line_error(ssd("score", patch_model, *inputs, "--maps", folder, "--device", "cpu"), ExitCode.OUTPUT_EXISTS, "not empty", "--force")
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    ok(ssd("score", patch_model, *inputs, "--maps", folder, "--force", "--device", "cpu"))
    one_line_error(ssd("score", patch_model, odd, "--maps", tmp_path / "m2", "--copy-to", tmp_path / "m2"), ExitCode.USAGE, "different folders")


def test_cli_score_maps_colour_the_threshold_mid_scale(patch_model: Path, labeled: Path, tmp_path: Path) -> None:
    """With a threshold far above every score the maps are all cold (blue), far below all warm."""
    for threshold, cold in ((1e6, True), (1e-6, False)):
        folder = tmp_path / f"maps-{cold}"
        ok(ssd("score", patch_model, labeled / "normal", "--maps", folder, "--threshold", threshold, "--device", "cpu"))
        for png in folder.iterdir():
            rgb = np.asarray(Image.open(png), dtype=float)
            assert (rgb[..., 2].mean() > rgb[..., 0].mean()) == cold
