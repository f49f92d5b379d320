"""Tiled models for large photos: tile geometry, tiles cut where they claim, stitching, a bounded
number of training tiles per image, the plan's choice, the model file, and a defect in one tile
found in its image's score and map, end to end through the API and the CLI.

Images are tiny (tiles of 32 px, patches of 16): every test runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssd_cli.api import Detector
from ssd_cli.core.config import Objective, Preprocessing, Resize, ThresholdSource, Tiling
from ssd_cli.core.maps import pixel_maps
from ssd_cli.core.nets import Encoder, get_spec
from ssd_cli.core.patches import PatchSpec
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.core.tiles import TiledGrids, TileSpec, pick_tiles, stitch
from ssd_cli.data.images import decode_scaled, fit_scaled
from ssd_cli.data import tiles as data_tiles
from ssd_cli.core.tiles import cut_tiles
from ssd_cli.data.tiles import iter_scaled, load_tiles
from ssd_cli.engine import TrainRequest, plan_training
from ssd_cli.errors import ExitCode, ModelFileError, UsageError
from ssd_cli.io.info import describe_model
from ssd_cli.core.model import SavedModel
from ssd_cli.io.modelfile import load_model, save_model

from conftest import ok, one_line_error, photos, rewrite, ssd

PATCH = PatchSpec(32, 16, 8)  # a tile's 3 x 3 grid of 16 px patches
TILE = TileSpec(32, 1.0, 16)  # 32 px tiles overlapping by a patch

# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize("tile", [TILE, TileSpec(32, 1.0, 0), TileSpec(32, 0.5, 31), TileSpec(7, 1.0, 3)])
@pytest.mark.parametrize("length", [1, 7, 31, 32, 33, 47, 48, 64, 95, 96, 97, 200])
def test_tiles_cover_every_pixel_and_every_window_of_the_overlap(tile: TileSpec, length: int) -> None:
    starts = tile.starts(length)
    size = tile.tile_size
    assert starts[0] == 0 and starts == sorted(set(starts))
    if length <= size:
        assert starts == [0]
        return
    assert starts[-1] + size == length  # the last tile ends on the border
    assert all(b - a <= size - tile.overlap for a, b in zip(starts, starts[1:]))
    covered = np.zeros(length, dtype=int)
    for s in starts:
        covered[s : s + size] += 1
    assert covered.min() >= 1
    # every window of the overlap's width (a patch, by default) lies whole inside some tile
    for a in range(length - tile.overlap + 1):
        assert any(s <= a and a + tile.overlap <= s + size for s in starts), a
    assert len(starts) == -(-(length - size) // (size - tile.overlap)) + 1  # no more tiles than needed


def test_boxes_are_rows_of_tiles_and_small_sides_are_stretched_to_a_tile() -> None:
    assert TILE.boxes(48, 80) == [(top, left) for top in (0, 16) for left in (0, 16, 32, 48)]
    assert TILE.scaled((100, 20)) == (100, 32)  # a side shorter than a tile becomes one tile
    assert TileSpec(32, 0.5, 16).scaled((201, 99)) == (100, 50)
    assert TileSpec(32, 0.25, 16).scaled((201, 99)) == (50, 32)


@pytest.mark.parametrize(
    "args", [(0, 1.0, 0), (32, 1.0, 32), (32, 1.0, -1), (32, 0.0, 16), (32, 1.5, 16), (32, float("nan"), 16), (32.0, 1.0, 16), (32, True, 16), (2048, 1.0, 16)]
)
def test_tile_spec_refuses_bad_geometry(args: tuple) -> None:
    with pytest.raises(ValueError):
        TileSpec(*args)


def test_tile_spec_round_trips_and_refuses_unknown_keys() -> None:
    spec = TileSpec(32, 0.5, 16)
    assert TileSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    for bad in ({"tile_size": 32, "scale": 1.0}, {**spec.to_dict(), "stride": 4}, [32, 1.0, 16]):
        with pytest.raises(ValueError):
            TileSpec.from_dict(bad)


def test_tiles_are_the_slices_they_claim() -> None:
    image = np.arange(3 * 48 * 80, dtype=np.int64).reshape(3, 48, 80) % 251  # every pixel told apart
    image = image.astype(np.uint8)
    boxes = TILE.boxes(48, 80)
    every = cut_tiles(image, TILE)
    assert every.shape == (len(boxes), 3, 32, 32) and every.dtype == torch.uint8
    for t, (top, left) in zip(every, boxes):
        np.testing.assert_array_equal(t.numpy(), image[:, top : top + 32, left : left + 32])
    some = cut_tiles(torch.from_numpy(image), TILE, [5, 0])
    np.testing.assert_array_equal(some.numpy(), every.numpy()[[5, 0]])
    assert cut_tiles(image, TILE, []).shape == (0, 3, 32, 32)


def test_training_tiles_are_bounded_seeded_and_distinct() -> None:
    assert pick_tiles(5, 8, 0, 0).tolist() == [0, 1, 2, 3, 4]
    chosen = pick_tiles(100, 8, 3, 7)
    assert len(chosen) == 8 and len(set(chosen.tolist())) == 8 and chosen.tolist() == sorted(chosen.tolist())
    assert np.array_equal(chosen, pick_tiles(100, 8, 3, 7))
    assert not np.array_equal(chosen, pick_tiles(100, 8, 4, 7)) and not np.array_equal(chosen, pick_tiles(100, 8, 3, 8))


# ---------------------------------------------------------------- stitching


def brute_stitch(t: TiledGrids, tile: TileSpec, patch: PatchSpec) -> np.ndarray:
    """Each pixel: the largest value any tile covering it gives it in that tile's own map."""
    maps = pixel_maps(t.grids, patch)
    out = np.full((t.height, t.width), -np.inf)
    for (top, left), m in zip(tile.boxes(t.height, t.width), maps):
        for y in range(tile.tile_size):
            for x in range(tile.tile_size):
                out[top + y, left + x] = max(out[top + y, left + x], m[y, x])
    return out


def test_stitching_puts_a_tiles_map_where_the_tile_is() -> None:
    boxes = TILE.boxes(48, 80)
    grids = np.zeros((len(boxes), 3, 3), dtype=np.float32)
    grids[6, 2, 1] = 5.0  # tile 6 (second row, third column), its bottom-middle patch
    t = TiledGrids(grids, 48, 80)
    stitched = stitch(t, TILE, PATCH)
    assert stitched.shape == (48, 80) and stitched.dtype == np.float32 and np.isfinite(stitched).all()
    top, left = boxes[6]
    y, x = np.unravel_index(np.argmax(stitched), stitched.shape)
    assert top + 16 <= y < top + 32 and left + 8 <= x < left + 24  # inside that patch of that tile
    assert stitched.max() <= t.score() == 5.0  # a map never exceeds its image's score
    outside = np.ones_like(stitched, dtype=bool)
    outside[top : top + 32, left : left + 32] = False
    assert np.all(stitched[outside] == 0)  # nothing leaks beyond the tile


def test_stitching_takes_the_maximum_where_tiles_overlap() -> None:
    rng = np.random.default_rng(0)
    t = TiledGrids(rng.random((len(TILE.boxes(40, 56)), 3, 3)).astype(np.float32), 40, 56)
    np.testing.assert_allclose(stitch(t, TILE, PATCH), brute_stitch(t, TILE, PATCH), rtol=1e-6)
    with pytest.raises(ValueError, match="tiles"):
        stitch(TiledGrids(t.grids[:-1], 40, 56), TILE, PATCH)


# ---------------------------------------------------------------- decoding, one image at a time


def grey(path: Path, wh: tuple[int, int], value: int = 60, spot: tuple[int, int, int] | None = None, exif: int | None = None) -> Path:
    """A flat grey picture, optionally with a white square spot = (x, y, side)."""
    arr = np.full((wh[1], wh[0]), value, dtype=np.uint8)
    if spot is not None:
        x, y, side = spot
        arr[y : y + side, x : x + side] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if exif is not None:
        info = Image.Exif()
        info[0x0112] = exif
        im.save(path, exif=info)
    else:
        im.save(path)
    return path


def test_scaled_decoding_keeps_the_displayed_shape(tmp_path: Path) -> None:
    turned = grey(tmp_path / "t.jpg", (80, 48), exif=6)  # stored 80 x 48, displayed 48 x 80
    assert decode_scaled(turned, TILE.scaled, 1).shape == (1, 80, 48)
    assert decode_scaled(turned, TileSpec(32, 0.5, 16).scaled, 3).shape == (3, 40, 32)  # 24 px stretched to a tile
    plain = grey(tmp_path / "p.png", (90, 70), spot=(10, 20, 5))
    with Image.open(plain) as im:
        np.testing.assert_array_equal(fit_scaled(im, TILE.scaled, 1), decode_scaled(plain, TILE.scaled, 1))
    mask = decode_scaled(plain, TileSpec(32, 0.5, 16).scaled, 1, mask=True)
    assert mask.shape == (1, 35, 45) and set(np.unique(mask)) <= {60, 255}  # nearest neighbour: no grey between


def test_decoding_holds_a_few_images_at_a_time(tmp_path: Path, monkeypatch) -> None:
    files = [grey(tmp_path / f"{i}.png", (40, 40)) for i in range(12)]
    decoded: list[Path] = []
    real = data_tiles.decode_scaled
    monkeypatch.setattr(data_tiles, "decode_scaled", lambda path, *a, **k: decoded.append(path) or real(path, *a, **k))
    stream = iter_scaled(files, TILE, 1, workers=2)
    for i, (path, image) in enumerate(stream, 1):
        assert path == files[i - 1] and image.shape == (1, 40, 40)
        assert len(decoded) <= i + 2  # never more than `workers` images ahead of the consumer
    assert len(decoded) == 12


def test_training_keeps_at_most_k_tiles_of_each_image(tmp_path: Path) -> None:
    files = [grey(tmp_path / f"{i}.png", (64, 64), value=10 * i) for i in range(5)]  # 3 x 3 = 9 tiles each
    (tmp_path / "broken.png").write_bytes(b"not an image")
    got = load_tiles([*files[:2], tmp_path / "broken.png", *files[2:]], TILE, 1, per_image=2, seed=0)
    assert got.tiles.shape == (10, 1, 32, 32) and got.counts == [2] * 5 and got.paths == files
    assert [s.path.name for s in got.skipped] == ["broken.png"]
    # the kept tiles are the image's own (each image has its own grey) and the seeded choice
    assert [int(t.float().mean()) for t in got.tiles] == [10 * i for i in range(5) for _ in range(2)]
    again = load_tiles(files, TILE, 1, per_image=2, seed=0)
    assert torch.equal(again.tiles, got.tiles)
    few = load_tiles(files[:1], TILE, 1, per_image=50, seed=0)
    assert few.counts == [9]  # an image with fewer tiles than k gives all of them


# ---------------------------------------------------------------- a model that sees brightness


def bright_model(tile: TileSpec = TILE) -> SavedModel:
    """A tiled model whose patch score grows with every pixel's brightness: positive weights, batch
    norm at its initial statistics, c = 0, pixels scaled to [0, 1]. A white spot on grey is then
    its image's worst patch, found with no training at all."""
    spec = get_spec("mnist", 1, 16)
    state = Encoder(spec).state_dict()
    for name, value in state.items():
        if name.endswith("weight"):
            state[name] = torch.full_like(value, 1.0 / value[0].numel())
    return SavedModel(
        spec=spec, objective=Objective.ONE_CLASS, nu=0.1, eta=1.0, preprocessor=Preprocessor(Preprocessing.SCALE),
        c=torch.zeros(spec.rep_dim), radius=0.0, threshold=1.0, threshold_rule="given", encoder_state=state,
        patch=PatchSpec(tile.tile_size, 16, 8), tile=tile,
    )  # fmt: skip


def spotted_folder(root: Path, wh: tuple[int, int], spot: tuple[int, int, int]) -> tuple[Path, Path]:
    """Four flat grey pictures and one with a white spot; returns (folder, the spotted file)."""
    for i in range(4):
        grey(root / f"{i}.png", wh)
    return root, grey(root / "spot.png", wh, spot=spot)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_a_defect_in_one_tile_tops_the_scores_and_peaks_in_its_map(scale: float, tmp_path: Path) -> None:
    wh, spot = ((150, 110), (97, 61, 6)) if scale == 1 else ((300, 220), (194, 122, 12))
    folder, spotted = spotted_folder(tmp_path / "photos", wh, spot)
    det = Detector(bright_model(TileSpec(32, scale, 16)), device="cpu")
    scores = det.score(folder)
    assert scores.ranked()[0].path == spotted
    flat = [r.score for r in scores if r.path != spotted]
    assert max(flat) - min(flat) < 1e-5 < scores.ranked()[0].score - max(flat)  # flat pictures score alike
    tile = TileSpec(32, scale, 16)
    scaled = tile.scaled(wh)
    assert scaled == (150, 110) and isinstance(scores.maps[0], TiledGrids) and len(scores.maps[0].grids) == len(tile.boxes(110, 150))
    # the map at the image's own size peaks at the spot
    heat = scores.geometry.at_image(scores.maps[[r.path for r in scores].index(spotted)], wh)
    assert heat.shape == (wh[1], wh[0])
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    reach = 16 / scale  # a patch, at the image's own scale
    assert spot[0] - reach < x < spot[0] + spot[2] + reach and spot[1] - reach < y < spot[1] + spot[2] + reach
    # score_maps: at the scaled image's resolution, never above the image's score
    maps = det.score_maps(spotted)
    assert maps.maps[0].shape == tuple(round(s * scale) for s in (wh[1], wh[0]))
    assert maps.maps[0].max() <= scores.ranked()[0].score + 1e-6


def test_in_memory_images_are_tiled_as_files_are(tmp_path: Path) -> None:
    folder, spotted = spotted_folder(tmp_path / "p", (90, 70), (50, 30, 5))
    det = Detector(bright_model(), device="cpu")
    from_file = det.score(spotted)
    with Image.open(spotted) as im:
        array = np.asarray(im)
        from_pil = det.score(im.copy())
    from_array = det.score(array)
    from_tensor = det.score(torch.from_numpy(array.copy())[None, None])
    for other in (from_pil, from_array, from_tensor):
        assert other.scores[0] == pytest.approx(from_file.scores[0], abs=1e-6)


def test_evaluate_with_masks_on_a_tiled_model(tmp_path: Path) -> None:
    normal = tmp_path / "normal"
    for i in range(3):
        grey(normal / f"{i}.png", (90, 70))
    for i, (x, y) in enumerate(((10, 10), (60, 40), (35, 50))):
        grey(tmp_path / "bad" / f"{i}.png", (90, 70), spot=(x, y, 6))
        grey(tmp_path / "masks" / f"{i}.png", (90, 70), value=0, spot=(x, y, 6))
    det = Detector(bright_model(), device="cpu")
    result = det.evaluate(normal, tmp_path / "bad", masks=tmp_path / "masks")
    assert result.metrics.auroc == 1.0
    assert result.pixel is not None and result.pixel.n_masked == 3 and result.pixel.auroc > 0.95


# ---------------------------------------------------------------- the model file


def test_model_file_round_trip_keeps_the_tiles(tmp_path: Path) -> None:
    model = bright_model(TileSpec(32, 0.5, 16))
    path = tmp_path / "tiled.safetensors"
    save_model(path, model)
    loaded = load_model(path)
    assert loaded.tile == model.tile and loaded.patch == model.patch and loaded.input_size == 32
    info = describe_model(loaded)
    assert info["input"]["tile"] == {"tile_size": 32, "scale": 0.5, "overlap": 16}
    folder, _ = spotted_folder(tmp_path / "p", (120, 90), (20, 20, 8))
    np.testing.assert_array_equal(Detector(loaded, device="cpu").score(folder).scores, Detector(model, device="cpu").score(folder).scores)
    # a file without tiles (as version 3 wrote it) still loads, as an untiled model
    rewrite(path, tmp_path / "v3.safetensors", drop_meta=("tile",), format_version="3")
    assert load_model(tmp_path / "v3.safetensors").tile is None


@pytest.mark.parametrize(
    "meta, drop, needle",
    [
        ({"tile": json.dumps({"tile_size": 64, "scale": 1.0, "overlap": 16})}, (), "need a patch-level model on 64 px"),
        ({"tile": json.dumps({"tile_size": 32, "scale": 0, "overlap": 16})}, (), "scale"),
        ({"tile": json.dumps({"tile_size": 32, "scale": 1.0})}, (), "lacks"),
        ({"tile": "[32"}, (), "damaged"),
        ({}, ("patch",), "need a patch-level model"),
    ],
)
def test_damaged_tile_metadata_is_refused(meta: dict, drop: tuple, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "tiled.safetensors"
    save_model(path, bright_model())
    rewrite(path, tmp_path / "bad.safetensors", drop_meta=drop, **meta)
    with pytest.raises(ModelFileError, match="damaged") as err:
        load_model(tmp_path / "bad.safetensors")
    assert needle in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- the plan and training


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Path:
    """Photos whose short side (100 px) is over twice a 32 px input: tiled by default."""
    return photos(tmp_path_factory.mktemp("large") / "photos", 6, (120, 100), colour=False)


def plan(folder: Path, **settings):
    base = {"image_size": 32, "patch_size": 16, "device": "cpu"} | settings
    return plan_training(TrainRequest(unlabeled=(folder,), **base), estimate=False)


def test_the_plan_tiles_only_large_images_and_says_why(large: Path, tmp_path: Path) -> None:
    tiled = plan(large)
    assert tiled.tiles.spec == TileSpec(32, 1.0, 16) and tiled.tiles.per_image == 8
    assert tiled.threshold_from is ThresholdSource.QUANTILE  # a patch-level default, but its held-out samples would be tiles
    assert tiled.tiles.typical == len(TILE.boxes(100, 120))
    assert "median short side 100 px is over 2x the 32 px input" in tiled.tiles.reason and "native resolution" in tiled.tiles.reason
    small = plan(photos(tmp_path / "small", 3, (70, 60), colour=False))  # 60 px: not over 2 x 32
    assert small.tiles.spec is None and small.tiles.reason == ""
    assert plan(tmp_path / "small", tiles=Tiling.ON).tiles.spec is not None
    off = plan(large, tiles=Tiling.OFF)
    assert off.tiles.spec is None and "--tiles off" in off.tiles.reason
    whole = plan(large, patch_size=0)
    assert whole.tiles.spec is None and "whole images" in whole.tiles.reason
    halved = plan(large, tile_scale=0.5)  # 50 px at half scale: no longer over 2 x 32
    assert halved.tiles.spec is None and any("--tile-scale 0.5 is not used" in w for w in halved.warnings)
    assert plan(large, tile_scale=0.5, tiles=Tiling.ON).tiles.spec == TileSpec(32, 0.5, 16)


@pytest.mark.parametrize(
    "settings, needle",
    [
        ({"tiles": Tiling.OFF, "tile_scale": 0.5}, "--tiles off"),
        ({"tile_scale": 1.5}, "--tile-scale must be in (0, 1]"),
        ({"tile_scale": 0.0}, "--tile-scale must be in (0, 1]"),
        ({"tiles_per_image": 0}, "--tiles-per-image must be positive"),
        ({"tiles": Tiling.ON, "patch_size": 0}, "needs a patch-level model"),
        ({"cache": Path("cache")}, "--cache is not available for tiled training"),
        ({"threshold_from": ThresholdSource.SYNTHETIC}, "--threshold-from synthetic is not available for tiled models"),
        ({"tiles_per_image": 2000}, "--tiles-per-image must be at most 1024"),
    ],
)
def test_contradictions_are_one_line_usage_errors(large: Path, settings: dict, needle: str) -> None:
    with pytest.raises(UsageError) as err:
        plan(large, **settings)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_training_on_tiles_end_to_end(large: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    for i in range(2):
        grey(bad / f"{i}.png", (120, 100), spot=(40, 30, 8))
    out = tmp_path / "tiled.safetensors"
    output = ok(ssd("train", "-u", large, "--anomalies", bad, "--image-size", 32, "--patch-size", 16, "--tiles-per-image", 3,
                    "--epochs", 1, "--pretrain-epochs", 1, "--batch-size", 16, "--device", "cpu", "--out", out))  # fmt: skip
    plan_text = output[output.index("plan:") : output.index("pretraining ")]
    assert "tiles: 32 px tiles at native resolution, overlapping by at least 16 px, about 42 per image" in plan_text
    assert "at most 3 random ones of each image trained on" in plan_text and "median short side 100 px is over 2x" in plan_text
    assert "2 labeled (scored after training, not trained on" in plan_text
    saved = load_model(out)
    assert saved.tile == TileSpec(32, 1.0, 16) and saved.patch == PatchSpec(32, 16, 8, top_k=4)
    t = saved.training
    assert (t["n_unlabeled"], t["n_labeled_anomalous"]) == (6, 2)  # images, not tiles
    assert t["tiles"] == {"per_image": 3, "trained": {"n_unlabeled": 18}}  # 3 of each image's 42 tiles; no anomaly's
    assert t["labeled_at_threshold"]["n_anomalous"] == 2
    # the threshold is a quantile of whole-image scores: the images' worst tiles, every tile scored
    scores = Detector.load(out, device="cpu").score(large).scores
    assert saved.threshold == pytest.approx(float(np.quantile(scores, 0.95)), rel=1e-5)
    info = ok(ssd("info", out))
    assert "tiles" in info and "cut into 32 px tiles overlapping by at least 16 px" in info
    maps = tmp_path / "maps"
    ok(ssd("score", out, bad, "--maps", maps, "--device", "cpu"))
    for png in sorted(maps.iterdir()):
        with Image.open(png) as im:
            assert im.size == (120, 100)
    result = ssd("train", "-u", large, "--image-size", 32, "--patch-size", 16, "--tiles", "off", "--tile-scale", "0.5", "--out", tmp_path / "x.safetensors")
    one_line_error(result, ExitCode.USAGE, "--tile-scale", "--tiles off")


def test_tiles_keep_the_shape_so_wide_photos_get_no_squash_warning(tmp_path: Path) -> None:
    wide = photos(tmp_path / "wide", 3, (240, 100), colour=False)  # aspect 2.4
    assert not any("squash distorts" in w for w in plan(wide).warnings)
    assert any("squash distorts" in w for w in plan(wide, tiles=Tiling.OFF).warnings)
    assert any("--resize crop is not used" in w for w in plan(wide, resize=Resize.CROP).warnings)


def test_a_pretrained_autoencoder_fixes_the_tiles(large: Path, tmp_path: Path) -> None:
    from ssd_cli.core.nets import AutoEncoder
    from ssd_cli.core.model import SavedAutoencoder
    from ssd_cli.io.modelfile import save_autoencoder

    spec = get_spec("mnist", 1, 16)
    for name, tile in (("tiled", TileSpec(32, 0.5, 16)), ("untiled", None)):
        saved = SavedAutoencoder(spec, Preprocessor(Preprocessing.SCALE), AutoEncoder(spec).state_dict(), patch=PATCH, tile=tile)
        save_autoencoder(tmp_path / f"{name}.safetensors", saved)
    tiled, untiled = tmp_path / "tiled.safetensors", tmp_path / "untiled.safetensors"
    chosen = plan(large, pretrained=tiled, image_size=None, patch_size=None)
    assert chosen.tiles.spec == TileSpec(32, 0.5, 16) and "from --pretrained" in chosen.tiles.reason
    assert plan(large, pretrained=untiled, image_size=None, patch_size=None).tiles.spec is None
    for path, settings, needle in (
        (tiled, {"tiles": Tiling.OFF}, "trained on tiles"),
        (tiled, {"tile_scale": 1.0}, "--tile-scale must match"),
        (untiled, {"tiles": Tiling.ON}, "trained without tiles"),
    ):
        with pytest.raises(UsageError, match=needle):
            plan(large, pretrained=path, image_size=None, patch_size=None, **settings)
