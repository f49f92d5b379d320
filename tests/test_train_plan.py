"""`ssd train` / `ssd pretrain` look at the data first: the printed plan, the choice of network, the
warnings, one source of schedules, and patch-level models, end to end through the CLI runner."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest
import torch

from ssd_cli.core.config import PAPER_PRETRAIN_COLOUR, OptimConfig, Resize, ThresholdSource
from ssd_cli.core.scoring import Scorer
from ssd_cli.engine import OptimOverrides, TrainRequest, plan_training
from ssd_cli.errors import ExitCode, UsageError
from ssd_cli.data.images import load_images
from ssd_cli.io.modelfile import load_autoencoder, load_model
from ssd_cli.core.presets import PATCH_MIN_STEPS, PATCH_SCHEDULE, SCHEDULES, UPRIGHT_TRAIN, schedule_for, with_epochs, with_min_steps

from conftest import ok, photos, ssd

TINY = ["--epochs", "1", "--pretrain-epochs", "1", "--batch-size", "16", "--device", "cpu"]


def warnings_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("warning:")]


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory) -> Path:
    return photos(tmp_path_factory.mktemp("colour") / "normal", 60, (80, 70))


# --- the plan -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_plan_is_printed_before_training_and_names_what_was_chosen(colour_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    output = ok(ssd("train", "-u", colour_dir, "--out", out, *TINY))
    plan_at, trained_at = output.index("plan:"), output.index("wrote")
    assert plan_at < output.index("pretraining") < trained_at
    plan = output[plan_at : output.index("pretraining ")]
    assert "--unlabeled: 60 image file(s)" in plan
    assert "100% colour" in plan and "80 x 70 px" in plan
    assert "network: lenet-64, 3x64x64" in plan and "colour: 100% of 60 sampled images" in plan
    assert "median short side 70" in plan
    assert "--resize squash" in plan and "preprocessing gcn" in plan
    assert re.search(r"pretraining: 1 epochs, Adam lr 0\.0001.*batch 16", plan)
    assert re.search(r"estimate: about .* of training here", plan)
    saved = load_model(out)
    assert (saved.spec.name, saved.spec.channels, saved.spec.image_size) == ("lenet-64", 3, 64)
    assert saved.resize is Resize.SQUASH
    assert any("colour" in r for r in saved.training["input_choice"])


@pytest.mark.slow
def test_user_settings_win_over_the_choice(colour_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    output = ok(ssd("train", "-u", colour_dir, "--arch", "cifar10", "--channels", "1", "--resize", "crop", "--out", out, *TINY))
    assert "network: cifar10, 1x32x32" in output
    saved = load_model(out)
    assert (saved.spec.name, saved.spec.channels, saved.spec.image_size, saved.resize) == ("cifar10", 1, 32, Resize.CROP)


def test_sample_data_keeps_the_papers_mnist_network(sample_dir: Path) -> None:
    plan = plan_training(TrainRequest(unlabeled=(sample_dir / "normal",), anomalies=(sample_dir / "anomalies",), device="cpu"), estimate=False)
    assert (plan.spec.name, plan.spec.channels, plan.spec.image_size) == ("mnist", 1, 28)
    assert plan.pretrain is None and plan.cfg.optim == UPRIGHT_TRAIN and plan.warnings == []
    # digits with labeled anomalies train on those alone; without any, against their turned copies
    assert not plan.cfg.synthetic.enabled and "no turned copies" in plan.anomalies_reason
    unlabeled = plan_training(TrainRequest(unlabeled=(sample_dir / "normal",), device="cpu"), estimate=False)
    assert unlabeled.cfg.synthetic.kinds == ("rotate",) and unlabeled.cfg.optim == UPRIGHT_TRAIN


# --- warnings (never failures) -------------------------------------------------------------------


@pytest.mark.slow
def test_overlapping_labeled_folder_is_warned_and_counted_once(colour_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    output = ok(ssd("train", "-u", colour_dir, "--anomalies", colour_dir / "000.png", "--out", out, *TINY))
    found = [w for w in warnings_of(output) if "in both" in w]
    assert len(found) == 1 and "--anomalies only" in found[0] and "000.png" in found[0]
    t = load_model(out).training
    assert (t["n_unlabeled"], t["n_labeled_anomalous"]) == (59, 1)


@pytest.mark.slow
def test_file_labeled_both_ways_counts_as_unlabeled(colour_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    both = colour_dir / "001.png"
    output = ok(ssd("train", "-u", colour_dir / "000.png", "--normals", both, "--anomalies", both, "--anomalies", colour_dir / "002.png", "--out", out, *TINY))
    assert any("contradict" in w for w in warnings_of(output))
    t = load_model(out).training
    assert (t["n_unlabeled"], t["n_labeled_normal"], t["n_labeled_anomalous"]) == (2, 0, 1)


@pytest.mark.slow
def test_few_images_and_wide_shapes_and_small_images_warn(tmp_path: Path) -> None:
    wide = photos(tmp_path / "wide", 12, (90, 30))
    output = ok(ssd("train", "-u", wide, "--image-size", "64", "--out", tmp_path / "m.safetensors", *TINY))
    found = warnings_of(output)
    assert any("only 12 image(s) in --unlabeled" in w for w in found)
    assert any("--resize crop" in w and "distorts" in w for w in found)
    assert any("will be upscaled" in w for w in found)


@pytest.mark.slow
def test_clean_folder_gives_no_warning(colour_dir: Path, tmp_path: Path) -> None:
    more = photos(tmp_path / "many", 60, (64, 64), seed=1)
    output = ok(ssd("train", "-u", more, "--out", tmp_path / "m.safetensors", *TINY))
    assert warnings_of(output) == []


def test_bad_patch_options_are_usage_errors(colour_dir: Path, tmp_path: Path) -> None:
    for args, needle in [(["--patch-size", "128"], "larger than"), (["--patch-size", "32", "--patch-stride", "7"], "stride"),
                         (["--patch-size", "32", "--objective", "soft-boundary"], "one-class")]:  # fmt: skip
        result = ssd("train", "-u", colour_dir, "--out", tmp_path / "m.safetensors", *TINY, *args)
        assert result.exit_code == ExitCode.USAGE, result.output
        assert needle in result.output
    assert not (tmp_path / "m.safetensors").exists()


# --- one source of training settings ---------------------------------------------------------------


def test_epochs_move_the_learning_rate_drop() -> None:
    assert with_epochs(OptimConfig(epochs=150, lr_milestones=(50,)), 30).lr_milestones == (10,)
    assert with_epochs(OptimConfig(epochs=150, lr_milestones=(50,)), 20).lr_milestones == (7,)
    assert with_epochs(OptimConfig(epochs=150, lr_milestones=(50,)), 1).lr_milestones == (1,)
    assert with_epochs(OptimConfig(epochs=350, lr_milestones=(250,)), 35).lr_milestones == (25,)


def test_cifar10_pretrains_only_when_asked_with_the_colour_preset_and_train_lr_is_not_reused(colour_dir: Path) -> None:
    request = TrainRequest(unlabeled=(colour_dir,), arch="cifar10", train=OptimOverrides(epochs=20, lr=3e-3), device="cpu")
    plan = plan_training(request, estimate=False)
    assert plan.pretrain is None  # small whole images train from random weights against turned copies
    assert (plan.cfg.optim.epochs, plan.cfg.optim.lr, plan.cfg.optim.lr_milestones) == (20, 3e-3, (14,))
    epochs_only = TrainRequest(unlabeled=(colour_dir,), arch="cifar10", pretrain=OptimOverrides(epochs=350), device="cpu")
    assert plan_training(epochs_only, estimate=False).pretrain == PAPER_PRETRAIN_COLOUR  # drop at 250, weight decay 0.5e-6
    asked = TrainRequest(unlabeled=(colour_dir,), arch="cifar10", pretrain=OptimOverrides(epochs=35, lr=3e-4), device="cpu")
    assert plan_training(asked, estimate=False).pretrain == OptimConfig(epochs=35, lr=3e-4, lr_milestones=(25,), weight_decay=0.5e-6)


def test_every_registered_network_has_a_schedule() -> None:
    from ssd_cli.core import nets

    assert set(nets.architectures()) <= set(SCHEDULES)


@pytest.mark.slow
def test_train_epochs_option_lowers_the_learning_rate(colour_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    ok(ssd("train", "-u", colour_dir, "--arch", "cifar10", "--epochs", "3", "--pretrain-epochs", "0", "--out", out, "--device", "cpu"))
    config = load_model(out).training["config"]["optim"]
    assert config["epochs"] == 3 and config["lr_milestones"] == [2]  # the drop at 70 of 100 epochs, moved


def test_bad_overrides_are_usage_errors_before_any_scan(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="epochs"):
        plan_training(TrainRequest(unlabeled=(tmp_path / "absent",), pretrain=OptimOverrides(epochs=-1)))


# --- patch-level models ----------------------------------------------------------------------------


@pytest.mark.slow
def test_patch_model_trains_saves_loads_and_scores_bit_identically(colour_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.safetensors"
    output = ok(ssd("train", "-u", colour_dir, "--patch-size", "32", "--patches-per-image", "2", "--out", out, *TINY))
    assert "patches: phi sees 32 px patches" in output and "3x3 grid patches" in output
    saved = load_model(out)
    assert saved.patch is not None and f"an image scores as the mean of the {saved.patch.top_k} worst of its 3x3" in output
    assert saved.patch is not None and (saved.patch.image_size, saved.patch.patch_size, saved.patch.stride) == (64, 32, 16)
    assert saved.spec.image_size == 32 and saved.input_size == 64
    files = sorted(colour_dir.glob("*.png"))[:8]
    images = load_images(files, 64, 3).images
    detector = Scorer(saved, torch.device("cpu"))
    maps = detector.score_maps(images)
    assert maps.shape == (8, 3, 3)
    again = Scorer(load_model(out), torch.device("cpu"))
    assert saved.patch.top_k == 4  # (patch / stride)^2 patches hold any one point
    assert torch.equal(again.score(images), maps.flatten(1).topk(4, dim=1).values.mean(1))
    scores_csv = tmp_path / "s.csv"
    ok(ssd("score", out, *files, "--output", scores_csv, "--device", "cpu"))
    with open(scores_csv, newline="") as f:
        rows = {r["path"]: float(r["score"]) for r in csv.DictReader(f)}
    assert len(rows) == 8  # header, then one row per file
    by_file = dict(zip(map(str, files), again.score(images).tolist()))
    assert rows == pytest.approx(by_file, rel=1e-6)


@pytest.mark.slow
def test_patch_pretraining_file_starts_a_patch_model(colour_dir: Path, tmp_path: Path) -> None:
    ae = tmp_path / "ae.safetensors"
    ok(ssd("pretrain", "-u", colour_dir, "--patch-size", "32", "--epochs", "1", "--batch-size", "16", "--patches-per-image", "1", "--out", ae, "--device", "cpu"))
    assert load_autoencoder(ae).patch is not None
    out = tmp_path / "m.safetensors"
    ok(ssd("train", "-u", colour_dir, "--pretrained", ae, "--epochs", "1", "--batch-size", "16", "--patches-per-image", "1", "--out", out, "--device", "cpu"))
    assert load_model(out).patch == load_autoencoder(ae).patch


@pytest.mark.slow
def test_decoder_option_reaches_the_files_and_must_match_a_pretrained_one(sample_dir: Path, tmp_path: Path) -> None:
    ae = tmp_path / "ae.safetensors"
    ok(ssd("pretrain", "-u", sample_dir / "normal", "--decoder", "transposed", "--epochs", "1", "--out", ae, "--device", "cpu"))
    assert load_autoencoder(ae).spec.decoder == "transposed"
    out = tmp_path / "m.safetensors"
    ok(ssd("train", "-u", sample_dir / "normal", "--pretrained", ae, "--epochs", "1", "--out", out, "--device", "cpu"))
    assert load_model(out).spec.decoder == "transposed"
    clash = ssd("train", "-u", sample_dir / "normal", "--pretrained", ae, "--decoder", "upsample", "--out", tmp_path / "x.safetensors")
    assert clash.exit_code == 2 and "pretrained with the transposed decoder" in clash.output
    bad = ssd("train", "-u", sample_dir / "normal", "--decoder", "deconv", "--out", tmp_path / "y.safetensors")
    assert bad.exit_code == 2 and "decoder must be one of" in bad.output
    assert plan_training(TrainRequest(unlabeled=(sample_dir / "normal",), device="cpu"), estimate=False).spec.decoder == "upsample"


def test_large_images_get_patch_level_models_by_default(tmp_path: Path) -> None:
    big = photos(tmp_path / "big", 6, (140, 130), colour=False)
    plan = plan_training(TrainRequest(unlabeled=(big,), device="cpu"), estimate=False)
    assert plan.patches is not None and plan.input_size == 128
    assert (plan.patches.spec.patch_size, plan.patches.spec.stride, plan.patches.samples_per_image) == (32, 16, 4)
    assert plan.cfg.synthetic.kinds == ("cutpaste", "scar", "confetti", "perlin")  # patch models train against synthetic defects
    assert (plan.spec.name, plan.spec.channels, plan.spec.image_size) == ("cifar10", 1, 32)
    # the patch schedule, not cifar10's 150/350: batches of 32 at lr 1e-3, no pretraining unless asked;
    # 6 images (24 crops) are one step an epoch, so the epochs give PATCH_MIN_STEPS steps
    assert (plan.cfg.optim.epochs, plan.cfg.optim.batch_size, plan.cfg.optim.lr, plan.pretrain) == (PATCH_MIN_STEPS, 32, 1e-3, None)
    asked = plan_training(TrainRequest(unlabeled=(big,), pretrain=OptimOverrides(epochs=5), device="cpu"), estimate=False)
    assert asked.pretrain is not None and asked.pretrain.epochs == 5
    whole = plan_training(TrainRequest(unlabeled=(big,), patch_size=0, device="cpu"), estimate=False)
    assert whole.patches is None and whole.spec.name == "lenet-128"
    named = plan_training(TrainRequest(unlabeled=(big,), arch="lenet-128", device="cpu"), estimate=False)
    assert named.patches is None


def test_small_folders_train_patch_models_for_at_least_the_minimum_steps(tmp_path: Path) -> None:
    """Steps, not epochs, teach phi: 100 photos at 20 epochs scored brick-cracks 0.70, at 100 epochs 0.92."""
    preset = PATCH_SCHEDULE.train
    assert with_min_steps(preset, 1880, PATCH_MIN_STEPS) == preset  # 470 images of 4 crops: 59 steps x 20 epochs suffice
    raised = with_min_steps(preset, 440, PATCH_MIN_STEPS)  # 110 images: 14 steps an epoch
    assert (raised.epochs, raised.lr_milestones) == (83, (58,)) and raised.epochs * 14 >= PATCH_MIN_STEPS > (raised.epochs - 1) * 14
    big = photos(tmp_path / "big", 40, (128, 128), colour=False)  # 40 images, 4 crops each: 5 steps an epoch (none held out)
    plan = plan_training(TrainRequest(unlabeled=(big,), device="cpu"), estimate=False)
    assert plan.cfg.optim.epochs == math.ceil(PATCH_MIN_STEPS / 5)
    mine = plan_training(TrainRequest(unlabeled=(big,), train=OptimOverrides(epochs=3), device="cpu"), estimate=False)
    assert mine.cfg.optim.epochs == 3  # the user's epochs are kept
    drops = plan_training(TrainRequest(unlabeled=(big,), train=OptimOverrides(lr_milestones=(5,)), device="cpu"), estimate=False)
    assert (drops.cfg.optim.epochs, drops.cfg.optim.lr_milestones) == (20, (5,))  # and their learning-rate drops, with the preset's epochs
    whole = plan_training(TrainRequest(unlabeled=(big,), patch_size=0, device="cpu"), estimate=False)
    assert whole.cfg.optim.epochs == schedule_for("lenet-128").train.epochs  # whole images keep their schedule


def test_the_plan_counts_the_images_held_out_for_the_threshold_and_its_check(tmp_path: Path) -> None:
    """110 photos and 16 labeled anomalies: 11 photos and 4 anomalies are held out, so an epoch has
    111 images (444 crops, 14 steps of 32) and the small-folder rule counts those."""
    big = photos(tmp_path / "big", 110, (128, 128), colour=False)
    bad = photos(tmp_path / "bad", 16, (128, 128), colour=False)
    plan = plan_training(TrainRequest(unlabeled=(big,), anomalies=(bad,), device="cpu"), estimate=False)
    assert plan.threshold_from is ThresholdSource.SYNTHETIC and plan.held_out == (11, 4)
    assert plan.cfg.optim.epochs == math.ceil(PATCH_MIN_STEPS / math.ceil(111 * 4 / 32))
    quantile = plan_training(TrainRequest(unlabeled=(big,), anomalies=(bad,), threshold_from=ThresholdSource.QUANTILE, device="cpu"), estimate=False)
    assert quantile.held_out == (0, 0)  # nothing held out: every image trains
    few = plan_training(TrainRequest(unlabeled=(big,), anomalies=(photos(tmp_path / "few", 15, (128, 128), colour=False),), device="cpu"), estimate=False)
    assert few.held_out == (11, 0)  # 3 would check nothing


@pytest.mark.slow
def test_soft_boundary_on_large_images_says_why_it_trains_whole_images(tmp_path: Path) -> None:
    """128 px inputs get a patch model by default; soft-boundary cannot have one, and the plan says so."""
    from ssd_cli import Detector

    class Stop(Exception):
        pass

    def stop(plan) -> None:
        plans.append(plan)
        raise Stop

    plans: list = []
    with pytest.raises(Stop):
        Detector(device="cpu", objective="soft-boundary").fit(photos(tmp_path / "big", 6, (140, 130), colour=False), on_plan=stop)
    plan = plans[0]
    assert plan.patches is None and plan.spec.name == "lenet-128"
    assert any("whole images" in r and "one-class only" in r for r in plan.choice.reasons), plan.choice.reasons
    one_class = plan_training(TrainRequest(unlabeled=(tmp_path / "big",), patch_size=0, device="cpu"), estimate=False)
    assert not any("one-class only" in r for r in one_class.choice.reasons)  # asked for: nothing to explain
