"""`ssd export` to ONNX: the graph scores real files as `ssd score` does, for every network family
and for tiled models, and docs/deploy.md's script, run as written, writes `ssd score`'s CSV."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import ExifTags, Image

from ssd_cli.api import Detector
from ssd_cli.core.config import Objective, Preprocessing
from ssd_cli.core.nets import Encoder, architectures, get_spec
from ssd_cli.core.patches import PatchSpec
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.core.scoring import Scorer
from ssd_cli.core.tiles import TiledGrids, TileSpec, cut_tiles
from ssd_cli.data.images import Skipped, list_images, load_images
from ssd_cli.data.tiles import iter_scaled
from ssd_cli.errors import ExitCode
from ssd_cli.io import onnx_export
from ssd_cli.core.model import SavedModel
from ssd_cli.io.modelfile import load_model, save_model
from conftest import ok, one_line_error, ssd

REPO = Path(__file__).resolve().parents[1]
RTOL = 1e-5  # the bound on scores; maps are held to it relative to their largest value
FAST = ["--epochs", 1, "--pretrain-epochs", 1, "--batch-size", 32, "--device", "cpu"]


# --- real files -----------------------------------------------------------------------------------


def cifar(data_root: Path, split: str, n: int, classes: tuple[str, ...] = ("airplane",)) -> list[np.ndarray]:
    """n real CIFAR-10 photos (HWC uint8), taken in turn from the classes."""
    folders = [sorted((data_root / "cifar10-jpeg" / split / c).glob("*.jpg")) for c in classes]
    if not all(folders):
        pytest.skip(f"CIFAR-10 JPEGs not found under {data_root}")
    return [np.asarray(Image.open(folders[i % len(folders)][i // len(folders)]).convert("RGB")) for i in range(n)]


def mosaic(tiles: list[np.ndarray], cols: int, rows: int) -> Image.Image:
    """Photos tiled cols x rows: a real picture of any size, without upscaling."""
    return Image.fromarray(np.concatenate([np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(rows)], axis=0))


def turned(im: Image.Image, path: Path, orientation: int) -> None:
    """Saved rotated, with the EXIF orientation that shows it upright again."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    undo = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    im.transpose(undo).save(path, quality=90, exif=exif)


def odd_files(folder: Path, photo: np.ndarray) -> None:
    """What a real folder holds besides plain photos: a blank frame, alpha, 16 bits, a truncated
    file, a hidden file and a non-image; ssd and the deploy script must read or skip them alike."""
    Image.new("RGB", (50, 40), (128, 128, 128)).save(folder / "blank.jpg")
    Image.fromarray(photo).convert("RGBA").resize((40, 30)).save(folder / "alpha.png")
    grey16 = (np.asarray(Image.fromarray(photo).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(folder / "sixteen.png")
    Image.fromarray(photo).save(folder / "whole.jpg", quality=90)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / ".hidden.jpg").write_bytes(data)
    (folder / "notes.txt").write_text("not an image\n")


@pytest.fixture(scope="module")
def colour_case(data_root: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A colour whole-image model (cifar10 network, GCN, --resize pad) and a folder of real photos:
    CIFAR-10 test images, non-square mosaics (decoded at reduced JPEG size), an EXIF-turned one."""
    root = tmp_path_factory.mktemp("colour")
    train = root / "train"
    train.mkdir()
    for i, arr in enumerate(cifar(data_root, "train", 48)):
        Image.fromarray(arr).save(train / f"{i:03d}.jpg", quality=90)
    model = root / "colour.safetensors"
    ok(ssd("train", "-u", train, "--arch", "cifar10", "--channels", 3, "--resize", "pad", "--preprocessing", "gcn", *FAST, "--out", model))
    incoming = root / "incoming"
    incoming.mkdir()
    photos = cifar(data_root, "test", 36, ("airplane", "cat", "ship", "frog"))
    for i, arr in enumerate(photos[:12]):
        Image.fromarray(arr).save(incoming / f"test-{i:02d}.jpg", quality=90)
    for i in range(3):
        mosaic(photos[12 + 6 * i : 18 + 6 * i], 3, 2).save(incoming / f"mosaic-{i}.jpg", quality=90)  # 96 x 64
    turned(mosaic(photos[30:36], 2, 3), incoming / "turned.jpg", 6)
    odd_files(incoming, photos[0])
    return model, incoming


@pytest.fixture(scope="module")
def patch_case(data_root: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A patch-level colour model (128 px inputs, 32 px patches at stride 16: a 7 x 7 grid, GCN,
    --resize crop) and a folder of real-photo mosaics: large ones, an EXIF-turned one, an odd one."""
    root = tmp_path_factory.mktemp("patch")
    tiles = cifar(data_root, "train", 20 * 12, ("automobile", "truck"))
    train = root / "train"
    train.mkdir()
    for i in range(12):
        mosaic(tiles[20 * i : 20 * i + 20], 5, 4).save(train / f"{i:03d}.jpg", quality=90)  # 160 x 128
    model = root / "patch.safetensors"
    # whitened, as patch-level models are by default: the Mahalanobis scores weigh up phi's directions
    # of least spread, and any rounding difference with them (GCN's sums in float32 made onnxruntime
    # differ from ssd by 1.5e-5 here, and by 3e-5 on real photos; they are float64 now)
    ok(ssd("train", "-u", train, "--image-size", 128, "--channels", 3, "--patch-size", 32, "--patch-stride", 16, "--patches-per-image", 2,
           "--resize", "crop", "--preprocessing", "gcn", *FAST, "--out", model))  # fmt: skip
    incoming = root / "incoming"
    incoming.mkdir()
    photos = cifar(data_root, "test", 400, ("automobile", "truck", "dog"))
    for i in range(4):
        mosaic(photos[20 * i : 20 * i + 20], 5, 4).save(incoming / f"mosaic-{i}.jpg", quality=90)
    mosaic(photos[80:380], 20, 15).save(incoming / "large.jpg", quality=90)  # 640 x 480: decoded at half size
    mosaic(photos[80:400], 20, 16).save(incoming / "large.png")  # 640 x 512, no reduced decoding: a box reduction first
    mosaic(photos[20:40], 5, 4).crop((0, 0, 165, 128)).save(incoming / "odd.png")  # the centre square is a half pixel off
    turned(mosaic(photos[:20], 4, 5), incoming / "turned.jpg", 8)
    Image.new("RGB", (160, 128), (90, 90, 90)).save(incoming / "blank.jpg")
    return model, incoming


@pytest.fixture(scope="module")
def sample_case(sample_model, sample_dir: Path, tmp_path_factory) -> tuple[Path, Path]:
    """The sample model (MNIST zeros, scale preprocessing) and sample_data/incoming."""
    model = tmp_path_factory.mktemp("sample") / "sample.safetensors"
    save_model(model, sample_model)
    return model, sample_dir / "incoming"


@pytest.fixture(scope="module")
def tiled_case(data_root: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A tiled colour model (photos at half scale cut into 64 px tiles, 32 px patches at stride 16,
    top_k 4, GCN) and a folder of real-photo mosaics of several sizes: JPEGs decoded at half size,
    odd sizes that are resampled, one with more than 64 tiles, an EXIF-turned one, and odd files."""
    root = tmp_path_factory.mktemp("tiled")
    photos = cifar(data_root, "train", 48 * 6 + 400, ("horse", "deer", "bird"))
    train = root / "train"
    train.mkdir()
    for i in range(6):
        mosaic(photos[48 * i : 48 * i + 48], 8, 6).save(train / f"{i:03d}.jpg", quality=90)  # 256 x 192: 6 tiles at half scale
    model = root / "tiled.safetensors"
    ok(ssd("train", "-u", train, "--image-size", 64, "--channels", 3, "--patch-size", 32, "--patch-stride", 16, "--tiles", "on",
           "--tile-scale", 0.5, "--tiles-per-image", 2, "--preprocessing", "gcn", *FAST, "--out", model))  # fmt: skip
    incoming = root / "incoming"
    incoming.mkdir()
    rest = photos[48 * 6 :]
    for i in range(3):
        mosaic(rest[48 * i : 48 * i + 48], 8, 6).save(incoming / f"mosaic-{i}.jpg", quality=90)
    mosaic(rest[:63], 9, 7).crop((0, 0, 283, 215)).save(incoming / "odd.jpg", quality=90)  # half size is fractional: resampled
    mosaic(rest[100:140], 8, 5).crop((0, 0, 250, 159)).save(incoming / "odd.png")
    mosaic(rest[:352], 22, 16).save(incoming / "large.png")  # 704 x 512: 88 tiles, scored 64 at a time
    turned(mosaic(rest[200:230], 5, 6), incoming / "turned.jpg", 6)
    odd_files(incoming, rest[0])  # a 40 x 30 one among them: smaller than a tile once scaled
    return model, incoming


CASES = ("sample_case", "colour_case", "patch_case")


def exported(model: Path, folder: Path) -> tuple[Path, Path, Path]:
    """(model file, its ONNX export by `ssd export`, made once, a folder of real files to score)."""
    onnx_path = model.with_suffix(".onnx")
    if not onnx_path.exists():
        result = ssd("export", model)
        ok(result)
        assert re.search(r"wrote .*\.onnx", result.output)
    return model, onnx_path, folder


@pytest.fixture(params=CASES)
def case(request) -> tuple[Path, Path, Path]:
    """An untiled model, its export and a folder: the graph's input is the fitted image."""
    return exported(*request.getfixturevalue(request.param))


@pytest.fixture(params=(*CASES, "tiled_case"))
def any_case(request) -> tuple[Path, Path, Path]:
    """Every kind of model, its export and a folder: what docs/deploy.md's one script handles."""
    return exported(*request.getfixturevalue(request.param))


def ssd_score_rows(model: Path, folder: Path, out: Path) -> list[dict[str, str]]:
    ok(ssd("score", model, folder, "--output", out, "--device", "cpu"))
    with open(out, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# --- sameness -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_scores_real_files_as_ssd_score(case, tmp_path: Path) -> None:
    """ssd's decoding feeds the graph; its scores match `ssd score`'s within 1e-5, its flags at the
    stored threshold are identical, and a patch model's maps match Detector.score's."""
    model, onnx_path, folder = case
    rows = {row["path"]: row for row in ssd_score_rows(model, folder, tmp_path / "ssd.csv")}
    saved = load_model(model)
    decoded = load_images(list_images([folder]).files, saved.input_size, saved.spec.channels, resize=saved.resize)
    assert sorted(str(p) for p in decoded.paths) == sorted(rows)
    sess = session(onnx_path)
    threshold = float(sess.get_modelmeta().custom_metadata_map["threshold"])
    assert threshold == saved.threshold
    outputs = sess.run(None, {"images": decoded.images.numpy()})
    want = np.array([float(rows[str(p)]["score"]) for p in decoded.paths])
    np.testing.assert_allclose(outputs[0], want, rtol=RTOL, atol=0)
    assert [bool(s > threshold) for s in outputs[0]] == [rows[str(p)]["anomalous"] == "1" for p in decoded.paths]
    if saved.patch is None:
        assert len(outputs) == 1
    else:
        scores = Detector.load(model, device="cpu").score([folder])
        grids = dict(zip((str(r.path) for r in scores), scores.maps))
        want_maps = np.stack([grids[str(p)] for p in decoded.paths])
        assert outputs[1].shape == (len(decoded.paths), saved.patch.grid, saved.patch.grid)
        np.testing.assert_allclose(outputs[1], want_maps, rtol=RTOL, atol=RTOL * float(want_maps.max()))
        top = np.sort(outputs[1].reshape(len(outputs[1]), -1), axis=1)[:, -saved.patch.top_k :]
        np.testing.assert_allclose(outputs[0], top.mean(axis=1), rtol=1e-6)  # the mean of the top_k patches


@pytest.mark.slow
def test_a_tiled_models_graph_scores_real_photos_tiles_as_ssd_score(tiled_case, tmp_path: Path) -> None:
    """ssd's decoding and tiling feed the graph; each photo's tile grids match Detector.score's (so
    do the maps stitched from them), and the image score from them (the top_k mean over all tiles)
    matches `ssd score`'s within 1e-5, with identical flags at the stored threshold."""
    model, onnx_path, folder = exported(*tiled_case)
    rows = {row["path"]: row for row in ssd_score_rows(model, folder, tmp_path / "ssd.csv")}
    saved = load_model(model)
    assert saved.tile == TileSpec(64, 0.5, 32) and saved.patch == PatchSpec(64, 32, 16, top_k=4)
    scores = Detector.load(model, device="cpu").score([folder])
    want = dict(zip((str(r.path) for r in scores), scores.maps))
    sess = session(onnx_path)
    meta = sess.get_modelmeta().custom_metadata_map
    threshold, top_k = float(meta["threshold"]), json.loads(meta["patch"])["top_k"]
    assert (TileSpec.from_dict(json.loads(meta["tile"])), threshold, meta["outputs"]) == (saved.tile, saved.threshold, "patch_scores")
    decoded = [(path, image) for path, image in iter_scaled(list_images([folder]).files, saved.tile, 3) if not isinstance(image, Skipped)]
    assert sorted(str(p) for p, _ in decoded) == sorted(rows) == sorted(want)
    n_tiles = []
    for path, image in decoded:
        (grids,) = sess.run(None, {"images": cut_tiles(image, saved.tile).numpy()})
        ours, theirs = TiledGrids(grids, image.shape[1], image.shape[2]), want[str(path)]
        np.testing.assert_allclose(grids, theirs.grids, rtol=RTOL, atol=RTOL * float(theirs.grids.max()))
        heat = scores.geometry.at_input(theirs)
        np.testing.assert_allclose(scores.geometry.at_input(ours), heat, rtol=RTOL, atol=RTOL * float(heat.max()))
        row = rows[str(path)]
        assert ours.score(top_k) == pytest.approx(float(row["score"]), rel=RTOL, abs=0)
        assert (ours.score(top_k) > threshold) == (row["anomalous"] == "1")
        n_tiles.append(len(grids))
    assert max(n_tiles) > 64 and min(n_tiles) == 1  # the large photo's tiles and a photo smaller than one tile


def deploy_script() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "deploy.md").read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1, "docs/deploy.md has one Python block: the script"
    return blocks[0]


@pytest.mark.slow
def test_deploy_script_as_written_writes_ssd_scores_csv(any_case, tmp_path: Path) -> None:
    """docs/deploy.md's script (numpy, Pillow, onnxruntime) decodes, fits (or tiles) and scores the
    folder itself: the same rows in the same order, flags and ranks as `ssd score`'s CSV, scores within 1e-5."""
    model, onnx_path, folder = any_case
    script = tmp_path / "score_onnx.py"
    script.write_text(deploy_script(), encoding="utf-8")
    run = subprocess.run([sys.executable, script, onnx_path, tmp_path / "onnx.csv", folder], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    ssd_rows = ssd_score_rows(model, folder, tmp_path / "ssd.csv")
    ours = (tmp_path / "onnx.csv").read_text(encoding="utf-8").splitlines()
    assert ours[0] == (tmp_path / "ssd.csv").read_text(encoding="utf-8").splitlines()[0] == "path,score,normalised_score,anomalous,rank"
    rows = list(csv.DictReader(ours))
    assert [(r["path"], r["anomalous"], r["rank"]) for r in rows] == [(r["path"], r["anomalous"], r["rank"]) for r in ssd_rows]
    for column in ("score", "normalised_score"):
        np.testing.assert_allclose([float(r[column]) for r in rows], [float(r[column]) for r in ssd_rows], rtol=RTOL, atol=0)
    skipped = {Path(m).name for m in re.findall(r"^skipped (.+?): ", run.stderr, flags=re.M)}
    assert skipped == ({"truncated.jpg"} if (folder / "truncated.jpg").exists() else set())


# --- every network, and the file --------------------------------------------------------------------


def untrained(arch: str, patch: PatchSpec | None = None, seed: int = 0) -> SavedModel:
    """A model of the registry's network with random weights and GCN statistics of random images:
    what the export must carry does not depend on training."""
    spec = get_spec(arch)
    size = patch.image_size if patch else spec.image_size
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (8, spec.channels, size, size), dtype=torch.uint8, generator=gen)
    torch.manual_seed(seed)
    encoder = Encoder(spec).eval()
    return SavedModel(
        spec=spec, objective=Objective.ONE_CLASS, nu=0.1, eta=1.0, preprocessor=Preprocessor.fit(Preprocessing.GCN, images),
        c=torch.randn(spec.rep_dim, generator=gen), radius=0.0, threshold=1.5, threshold_rule="test", encoder_state=encoder.state_dict(), patch=patch,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("arch", architectures())
def test_every_registered_network_exports_with_a_free_batch(arch: str, tmp_path: Path) -> None:
    saved = untrained(arch)
    path = tmp_path / f"{arch}.onnx"
    meta = Detector(saved, device="cpu").export(path)
    assert meta["network"] == arch and meta["outputs"] == "score"
    sess = session(path)
    (inp,) = sess.get_inputs()
    assert inp.name == "images" and inp.type == "tensor(uint8)"
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [saved.spec.channels, saved.spec.image_size, saved.spec.image_size]
    scorer = Scorer(saved, torch.device("cpu"))
    for n in (1, 5):
        images = torch.randint(0, 256, (n, *inp.shape[1:]), dtype=torch.uint8, generator=torch.Generator().manual_seed(10 + n))
        (got,) = sess.run(None, {"images": images.numpy()})
        np.testing.assert_allclose(got, scorer.score(images).numpy(), rtol=RTOL, atol=0)


@pytest.mark.slow
def test_a_patch_model_exports_its_grid_and_metadata_says_how_to_feed_it(tmp_path: Path) -> None:
    patch = PatchSpec(96, 32, 8)  # a 9 x 9 grid
    saved = untrained("cifar10", patch)
    path = tmp_path / "patch.onnx"
    Detector(saved, device="cpu").export(path)
    sess = session(path)
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["format"] == "ssd-onnx" and meta["model_format"] == "ssd-model" and meta["ssd_version"] and meta["model_format_version"]
    assert (meta["input_size"], meta["channels"], meta["resize"]) == ("96", "3", "squash")
    assert json.loads(meta["patch"]) == {"image_size": 96, "patch_size": 32, "stride": 8, "grid": 9, "top_k": 1}
    assert (float(meta["threshold"]), meta["threshold_rule"]) == (1.5, "test")
    assert json.loads(meta["preprocessing"])["kind"] == "gcn"
    assert [o.name for o in sess.get_outputs()] == meta["outputs"].split(",") == ["score", "patch_scores"]
    images = torch.randint(0, 256, (2, 3, 96, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    scores, maps = sess.run(None, {"images": images.numpy()})
    want = Scorer(saved, torch.device("cpu")).score_maps(images).numpy()
    assert maps.shape == (2, 9, 9)
    np.testing.assert_allclose(maps, want, rtol=RTOL, atol=RTOL * float(want.max()))
    np.testing.assert_array_equal(scores, maps.reshape(2, -1).max(axis=1))


@pytest.mark.slow
def test_a_tiled_model_exports_its_tiles_grids_and_metadata_says_how_to_cut_photos(tmp_path: Path) -> None:
    """The graph takes tiles (any number, from any photos) and gives their patch scores, no score:
    an image's score is the top_k mean over all its tiles, which the metadata's tile and patch give."""
    from dataclasses import replace

    tiled = replace(untrained("cifar10", PatchSpec(64, 32, 16, top_k=3)), tile=TileSpec(tile_size=64, scale=0.5, overlap=32))
    path = tmp_path / "tiled.onnx"
    meta = Detector(tiled, device="cpu").export(path)
    assert json.loads(meta["tile"]) == {"tile_size": 64, "scale": 0.5, "overlap": 32} and "resize" not in meta
    assert (meta["format_version"], meta["input_size"], json.loads(meta["patch"])["top_k"]) == ("2", "64", 3)
    sess = session(path)
    assert sess.get_modelmeta().custom_metadata_map == meta
    (inp,) = sess.get_inputs()
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 64, 64]
    assert [o.name for o in sess.get_outputs()] == meta["outputs"].split(",") == ["patch_scores"]
    photo = torch.randint(0, 256, (3, 150, 170), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))  # scaled already
    want = Scorer(tiled, torch.device("cpu")).score_tiled(photo)
    (grids,) = sess.run(None, {"images": cut_tiles(photo, tiled.tile).numpy()})
    assert grids.shape == (len(tiled.tile.boxes(150, 170)), 3, 3)
    np.testing.assert_allclose(grids, want.grids, rtol=RTOL, atol=RTOL * float(want.grids.max()))
    assert np.sort(grids, axis=None)[-3:].mean(dtype=np.float32) == pytest.approx(want.score(3), rel=RTOL)  # deploy.md's rule


# Every field of a model: carried into the graph or its metadata, or not needed to score. A field
# added later fails here until `ssd export` carries it or refuses models that use it.
CARRIED = {"spec", "preprocessor", "c", "encoder_state", "patch", "tile", "threshold", "threshold_rule", "resize", "tool_version"}
NOT_NEEDED_TO_SCORE = {"objective", "nu", "eta", "radius", "training"}  # radius: the threshold carries it


def test_export_accounts_for_every_field_of_a_model() -> None:
    from dataclasses import fields

    assert {f.name for f in fields(SavedModel)} == CARRIED | NOT_NEEDED_TO_SCORE


@pytest.mark.slow
def test_a_graph_that_scores_differently_is_refused_and_nothing_is_written(tmp_path: Path, monkeypatch) -> None:
    """The check compares with ssd's own scorer, not with the traced graph: an export that drifts
    by 1e-4 (here a graph made to) fails with exit code 4, and the folder stays empty."""
    model = tmp_path / "m" / "model.safetensors"
    model.parent.mkdir()
    save_model(model, untrained("mnist"))
    forward = onnx_export.ScoringGraph.forward
    monkeypatch.setattr(onnx_export.ScoringGraph, "forward", lambda self, images: forward(self, images) * 1.0001)
    out = tmp_path / "out"
    out.mkdir()
    one_line_error(ssd("export", model, "--out", out / "model.onnx"), ExitCode.BAD_MODEL, "cannot export this model faithfully", "score differs")
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_export_keeps_an_existing_file_unless_forced(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    save_model(model, untrained("mnist"))
    target = tmp_path / "model.onnx"
    target.write_bytes(b"keep me")
    one_line_error(ssd("export", model), ExitCode.OUTPUT_EXISTS, "already exists", "--force")
    assert target.read_bytes() == b"keep me"
    ok(ssd("export", model, "--force"))
    assert session(target).get_modelmeta().custom_metadata_map["network"] == "mnist"
    one_line_error(ssd("export", model, "--out", tmp_path / "model.txt"), ExitCode.USAGE, ".onnx")
    one_line_error(ssd("export", tmp_path / "missing.safetensors", "--out", tmp_path / "x.onnx"), ExitCode.BAD_MODEL, "does not exist")


def test_without_the_extra_export_names_it_and_exits_2(tmp_path: Path, monkeypatch) -> None:
    model = tmp_path / "model.safetensors"
    save_model(model, untrained("mnist"))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("onnx", "onnxruntime") else find_spec(name, *a))
    one_line_error(ssd("export", model), ExitCode.USAGE, "onnx, onnxruntime", "pip install 'ssd-cli[export]'")
    assert not model.with_suffix(".onnx").exists()


def test_help_tells_what_export_does() -> None:
    result = ssd("export", "--help")
    ok(result)
    for needle in ("--out", "--force", "ONNX", "uint8", "threshold", "ssd-cli[export]", "deploy.md"):
        assert needle in result.output, needle
    assert re.search(r"export\s+Export a model to ONNX", ssd("--help").output)
