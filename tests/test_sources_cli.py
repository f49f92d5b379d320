"""Sample sources through `ssd train`: synthetic anomalies by default for patch-level models (local
defects) and small whole-image one-class models (turned copies; colour ones also mirrored),
--synthetic / --augment / --anomaly-loss / --outliers as the plan and the model file record them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ssd_cli.cli import app
from ssd_cli.data.images import list_images
from ssd_cli.data.outliers import BUILTIN_OUTLIER_COUNT, BUILTIN_OUTLIERS
from ssd_cli.io.modelfile import load_model

FAST = ["--device", "cpu", "--batch-size", "16", "--epochs", "1", "--pretrain-epochs", "0", "--force"]


def ssd(*args: object):
    result = CliRunner().invoke(app, [str(a) for a in args])
    result.text = " ".join(result.output.split())  # rich wraps lines at the terminal width
    return result


def folder(root: Path, n: int, size: int, seed: int, colour: bool = False) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape = (size, size, 3) if colour else (size, size)
        Image.fromarray(rng.integers(60, 200, shape, dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return folder(tmp_path_factory.mktemp("photos") / "normal", 12, 128, 0)


@pytest.mark.slow
def test_patch_models_train_against_synthetic_defects_by_default(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    result = ssd("train", "-u", photos, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "synthetic cutpaste/scar/confetti/perlin" in result.text
    config = load_model(out).training["config"]
    assert config["synthetic"]["kinds"] == ["cutpaste", "scar", "confetti", "perlin"] and config["anomaly_loss"] == "inverse"


def test_small_whole_image_models_train_against_turned_copies(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    result = ssd("train", "-u", sample_dir / "normal", "--out", out, "--device", "cpu", "--epochs", "1", "--force")
    assert result.exit_code == 0, result.output
    assert "synthetic rotate" in result.text and "pretraining: none" in result.text
    config = load_model(out).training["config"]
    assert config["synthetic"]["kinds"] == ["rotate"]
    assert (config["optim"]["lr"], config["optim"]["batch_size"]) == (1e-3, 64)


def test_digits_with_labeled_anomalies_train_on_those_alone_unless_told(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    given = ("-u", sample_dir / "normal", "--anomalies", sample_dir / "anomalies", "--out", out, "--device", "cpu", "--epochs", "1", "--force")
    result = ssd("train", *given)
    assert result.exit_code == 0, result.output
    assert "no synthetic ones" in result.text and "no turned copies" in result.text
    assert load_model(out).training["config"]["synthetic"]["kinds"] == []
    result = ssd("train", *given, "--synthetic", "rotate")  # asked for: made as before
    assert result.exit_code == 0 and "synthetic rotate" in result.text
    assert load_model(out).training["config"]["synthetic"]["kinds"] == ["rotate"]
    colour = folder(tmp_path / "small", 12, 32, 2, colour=True)
    bad = folder(tmp_path / "bad", 3, 32, 3, colour=True)
    result = ssd("train", "-u", colour, "--anomalies", bad, "--out", out, *FAST)  # photos of objects keep them
    assert result.exit_code == 0 and load_model(out).training["config"]["synthetic"]["kinds"] == ["rotate"]


def test_small_colour_photos_are_mirrored_unless_told_not_to(tmp_path: Path) -> None:
    photos = folder(tmp_path / "small", 12, 32, 2, colour=True)
    out = tmp_path / "m.safetensors"
    result = ssd("train", "-u", photos, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "images augmented each step: hflip" in result.text
    assert load_model(out).training["config"]["augment"] == ["hflip"]
    info = ssd("info", out)
    assert "augmented: hflip" in info.text
    result = ssd("train", "-u", photos, "--out", out, "--augment", "none", *FAST)
    assert result.exit_code == 0 and "augmented each step" not in result.text
    assert load_model(out).training["config"]["augment"] == []


def test_ssds_own_outlier_photos_ship_whole() -> None:
    listing = list_images([BUILTIN_OUTLIERS], what="outliers")
    assert len(listing.files) == BUILTIN_OUTLIER_COUNT and not listing.skipped
    for path in listing.files[::13]:
        with Image.open(path) as im:
            assert (im.size, im.mode) == ((32, 32), "RGB")


@pytest.mark.slow
def test_small_colour_photos_keep_ssds_outlier_photos_away_unless_told_not_to(sample_dir: Path, tmp_path: Path) -> None:
    photos = folder(tmp_path / "small", 12, 32, 2, colour=True)
    mine = folder(tmp_path / "mine", 5, 32, 3, colour=True)
    out = tmp_path / "m.safetensors"
    n = BUILTIN_OUTLIER_COUNT
    cases = [
        ([], n, f"{n} outlier images (weight 1: ssd's own outlier photos)"),
        (["--outliers", mine], 5, "5 outlier images (weight 1)"),  # the user's own replace them
        (["--outliers", mine, "--builtin-outliers"], n + 5, f"{n + 5} outlier images (weight 1, ssd's own outlier photos among them)"),
        (["--no-builtin-outliers"], 0, "0 labeled, synthetic rotate"),
    ]
    for options, count, planned in cases:
        result = ssd("train", "-u", photos, "--out", out, *options, *FAST)
        assert result.exit_code == 0, result.output
        assert planned in result.text, (options, result.text)
        training = load_model(out).training
        assert training["n_outliers"] == count and training["builtin_outliers"] is (count >= n), options
    ssd("train", "-u", photos, "--out", out, *FAST)
    assert f"{n} outlier images (ssd's own among them)" in ssd("info", out).text
    result = ssd("train", "-u", sample_dir / "normal", "--out", out, *FAST)  # grayscale digits: none
    assert result.exit_code == 0 and load_model(out).training["n_outliers"] == 0


def test_an_unknown_augmentation_is_a_usage_error(sample_dir: Path, tmp_path: Path) -> None:
    result = ssd("train", "-u", sample_dir / "normal", "--out", tmp_path / "m.safetensors", "--augment", "vflip", *FAST)
    assert result.exit_code == 2 and "unknown augmentation(s) vflip; choose from hflip or none" in result.text
    assert "Traceback" not in result.output and not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("options", [["--patch-size", "0"], ["--objective", "soft-boundary"]])
def test_larger_whole_images_and_soft_boundary_keep_the_papers_objective(sample_dir: Path, photos: Path, tmp_path: Path, options: list[str]) -> None:
    out = tmp_path / "m.safetensors"
    source = photos if "--patch-size" in options else sample_dir / "normal"
    result = ssd("train", "-u", source, "--out", out, *options, *FAST)
    assert result.exit_code == 0, result.output
    assert "no synthetic ones" in result.text
    assert load_model(out).training["config"]["synthetic"]["kinds"] == []


@pytest.mark.slow
def test_synthetic_loss_and_outliers_are_recorded(photos: Path, tmp_path: Path) -> None:
    outliers = folder(tmp_path / "outliers", 5, 96, 1, colour=True)
    out = tmp_path / "m.safetensors"
    result = ssd("train", "-u", photos, "--outliers", outliers, "--outlier-weight", "0.5", "--synthetic", "scar,perlin",
                 "--synthetic-ratio", "1", "--anomaly-loss", "hsc", "--out", out, *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "5 outlier images (weight 0.5)" in result.text and "synthetic scar/perlin, 1 per normal sample" in result.text
    training = load_model(out).training
    assert training["n_outliers"] == 5 and training["n_unlabeled"] == 12
    assert training["config"]["synthetic"]["kinds"] == ["scar", "perlin"] and training["config"]["synthetic"]["ratio"] == 1.0
    assert training["config"]["anomaly_loss"] == "hsc" and training["config"]["outlier_weight"] == 0.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--synthetic", "scratches"], "unknown synthetic anomaly kind(s) scratches"),
        (["--synthetic-ratio", "0"], "ratio must be in (0, 4]"),
        (["--outlier-weight", "-1"], "outlier weight must be a number in (0, "),
        (["--objective", "soft-boundary", "--patch-size", "0", "--anomaly-loss", "hsc"], "for the one-class objective"),
    ],
)
def test_bad_source_options_are_usage_errors(photos: Path, tmp_path: Path, options: list[str], message: str) -> None:
    result = ssd("train", "-u", photos, *options, "--out", tmp_path / "m.safetensors", *FAST)
    assert result.exit_code == 2, result.output
    assert message in result.text


@pytest.mark.slow
def test_threshold_from_held_out_and_synthetic_anomalies(tmp_path: Path) -> None:
    """10% of the unlabeled images are held out; the stored threshold is F1-best between them and
    synthetic anomalies made from them, and lies above the held-out images' scores mostly."""
    photos = folder(tmp_path / "many", 100, 64, 3)
    out = tmp_path / "m.safetensors"
    result = ssd("train", "-u", photos, "--threshold-from", "synthetic", "--patch-size", "32", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "F1-best between 10% of the unlabeled images" in result.text
    saved = load_model(out)
    record = saved.training
    assert record["n_unlabeled"] == 90 and record["calibration"]["n_held_out_normal"] == 10
    assert record["calibration"]["n_synthetic"] == 10 and saved.threshold == record["calibration"]["threshold"]
    assert "F1-best between 10 held-out images and 10 synthetic anomalies" in saved.threshold_rule


@pytest.mark.slow
def test_a_quarter_of_the_labeled_anomalies_check_the_model(tmp_path: Path) -> None:
    """With 16 labeled anomalies, 4 are kept out of training with the 10 held-out normal images:
    they take no part in the threshold and are scored against those images as a check."""
    photos = folder(tmp_path / "many", 100, 64, 3)
    bad = folder(tmp_path / "bad", 16, 64, 4)
    out = tmp_path / "m.safetensors"
    result = ssd("train", "-u", photos, "--anomalies", bad, "--patch-size", "32", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "4 of the 16 labeled anomalies are held out too" in result.text
    assert "check on images kept out of training: 4 labeled anomalies against 10 normal images" in result.text
    saved = load_model(out)
    record = saved.training
    assert record["n_labeled_anomalous"] == 12 and record["n_unlabeled"] == 90
    check = record["calibration"]["held_out_anomalies"]
    assert check["n_anomalous"] == 4 and check["n_normal"] == 10 and 0.0 <= check["auroc"] <= 1.0
    assert 0 <= check["anomalous_above"] <= 4 and 0 <= check["normal_above"] <= 10
    assert record["calibration"]["n_synthetic"] == 10  # made from the held-out normal images only
    assert ("score about as normal images do" in result.text) == (check["auroc"] <= 0.6)  # noise images: near chance
    info = ssd("info", out, "--json")
    assert json.loads(info.stdout)["training"]["held_out_check"] == check
    assert "held-out check" in ssd("info", out).text  # a row of the table (its cell wraps)


@pytest.mark.slow
def test_too_few_images_to_hold_out_keep_the_quantile(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    result = ssd("train", "-u", photos, "--threshold-from", "synthetic", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    saved = load_model(out)
    assert saved.training["calibration"] is None and "quantile" in saved.threshold_rule
    assert saved.training["threshold_source"] == "quantile (too few images to hold out)"
