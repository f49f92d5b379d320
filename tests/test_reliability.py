"""Hostile and odd inputs (issue 9): each class of failure, through the CLI, with its exit code.

Exit code 1 means a bug in ssd; none of these may end in it or in a traceback.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from ssd_cli.errors import ExitCode, OutputExistsError
from ssd_cli.io import files as files_module
from ssd_cli.io.files import write_text_atomic
from ssd_cli.io.modelfile import load_model

from conftest import ok, one_line_error, ssd

TINY = ["--epochs", 1, "--pretrain-epochs", 1, "--device", "cpu"]


@pytest.fixture(scope="module")
def model(sample_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rel") / "model.safetensors"
    ok(ssd("train", "-u", sample_dir / "normal", "--anomalies", sample_dir / "anomalies", "--epochs", 3, "--pretrain-epochs", 3, "--out", out, "--device", "cpu"))
    return out


def copy_images(sample_dir: Path, folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in sorted((sample_dir / "normal").glob("*.png"))[:n]:
        shutil.copy(f, folder)
    return folder


# --- 1. non-finite numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["score", "--threshold", "nan"], ["score", "--threshold", "inf"], ["score", "--contamination", "nan"], ["evaluate", "--threshold", "nan"], ["evaluate", "--recall", "nan"]],
)
def test_non_finite_scoring_options_are_usage_errors(model: Path, sample_dir: Path, args: list) -> None:
    command, *rest = args
    where = [sample_dir / "incoming"] if command == "score" else ["--labels", sample_dir / "incoming_labels.csv"]
    one_line_error(ssd(command, model, *where, *rest), ExitCode.USAGE)


def test_a_diverging_run_stops_and_writes_nothing(sample_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """A loss that becomes infinite (an lr that could make it is refused as absurd: exit 2)."""
    from ssd_cli.core.config import Objective
    from ssd_cli.core.objectives import LOSSES

    monkeypatch.setitem(LOSSES, Objective.SOFT_BOUNDARY, lambda dist, y, radius, cfg: dist.mean() * float("inf"))
    out = tmp_path / "m.safetensors"
    result = ssd("train", "-u", sample_dir / "normal", "--objective", "soft-boundary", "--pretrain-epochs", 0, "--epochs", 3, "--out", out, "--device", "cpu")
    one_line_error(result, ExitCode.DIVERGED, "diverged", "nothing was written")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_diverging_pretraining_exits_6_and_says_so(sample_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Weights blown up in pretraining make phi overflow and c infinite: divergence (6), not bad input."""
    import torch

    from ssd_cli.core import pipeline

    real = pipeline.pretrain

    def blown_up(*args, **kwargs):
        ae, losses = real(*args, **kwargs)
        with torch.no_grad():
            next(ae.encoder.parameters()).fill_(float("inf"))
        return ae, losses

    monkeypatch.setattr(pipeline, "pretrain", blown_up)
    out = tmp_path / "m.safetensors"
    result = ssd("train", "-u", copy_images(sample_dir, tmp_path / "few", 20), "--pretrain-epochs", 1, "--epochs", 1, "--batch-size", 16, "--out", out, "--device", "cpu")
    line = one_line_error(result, ExitCode.DIVERGED, "diverged", "nothing was written", "--pretrain-lr")
    assert "input data" not in line
    assert not out.exists()


@pytest.mark.parametrize("where", ["encoder.0.weight", "c"])
def test_a_model_with_a_nan_is_refused_on_load(model: Path, tmp_path: Path, where: str) -> None:
    tensors = load_file(str(model))
    from safetensors import safe_open

    with safe_open(str(model), framework="pt") as f:
        meta = f.metadata()
    name = where if where in tensors else next(k for k in tensors if k.startswith("encoder.") and tensors[k].is_floating_point())
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    one_line_error(ssd("score", bad, tmp_path), ExitCode.BAD_MODEL, "not finite")
    one_line_error(ssd("info", bad), ExitCode.BAD_MODEL, "not finite")


# --- 2. decompression bombs -------------------------------------------------------------------------


def png_declaring(path: Path, width: int, height: int) -> None:
    """A valid PNG header declaring width x height, with almost no data: a few hundred bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def test_an_image_over_the_pixel_limit_is_skipped_by_name(model: Path, sample_dir: Path, tmp_path: Path) -> None:
    folder = copy_images(sample_dir, tmp_path / "in", 3)
    png_declaring(folder / "bomb.png", 60_000, 60_000)
    assert (folder / "bomb.png").stat().st_size < 2000
    result = ssd("score", model, folder, "--device", "cpu")
    ok(result)
    assert "bomb.png (too large (60000x60000 = 3600 megapixels" in result.output and "3 images" in result.output
    # the limit is an option; under a limit of 100 pixels every 28x28 image is too large
    result = ssd("--max-image-pixels", 100, "score", model, folder, "--device", "cpu")
    one_line_error(result, ExitCode.BAD_INPUT, "could be read")
    result = ssd("--max-image-pixels", 0, "score", model, folder)
    assert result.exit_code == ExitCode.USAGE and "--max-image-pixels" in result.output


def test_training_skips_an_oversized_image_too(sample_dir: Path, tmp_path: Path) -> None:
    folder = copy_images(sample_dir, tmp_path / "u", 20)
    png_declaring(folder / "bomb.png", 50_000, 40_000)
    result = ssd("train", "-u", folder, "--batch-size", 8, "--out", tmp_path / "m.safetensors", *TINY)
    ok(result)
    assert "bomb.png" in result.output and "too large" in result.output
    assert load_model(tmp_path / "m.safetensors").training["n_unlabeled"] == 20


@pytest.fixture()
def unreadable_dir(sample_dir: Path, tmp_path: Path) -> Path:
    """Two image files, neither readable: one truncated, one over the pixel limit."""
    folder = tmp_path / "unreadable"
    folder.mkdir()
    source = next((sample_dir / "normal").glob("*.png")).read_bytes()
    (folder / "cut.png").write_bytes(source[: len(source) // 2])
    png_declaring(folder / "huge.png", 60_000, 60_000)
    return folder


def test_when_no_file_can_be_read_the_error_names_them_and_why(model: Path, sample_dir: Path, unreadable_dir: Path, tmp_path: Path) -> None:
    named = ("cut.png (unreadable image", "huge.png (too large (60000x60000")
    one_line_error(ssd("score", model, unreadable_dir, "--device", "cpu"), ExitCode.BAD_INPUT, "none of the 2", *named)
    # evaluate says that the normal files were unreadable, not that every sample is anomalous
    result = ssd("evaluate", model, "--normal", unreadable_dir, "--anomalous", sample_dir / "anomalies", "--device", "cpu")
    line = one_line_error(result, ExitCode.BAD_INPUT, "--normal: none of the 2", *named)
    assert "anomalous" not in line.split(":")[1]
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(ssd("evaluate", model, "--normal", empty, "--anomalous", sample_dir / "anomalies"), ExitCode.BAD_INPUT, "--normal: no image files")


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_training_on_unreadable_files_fails_before_the_plan(command: str, unreadable_dir: Path, tmp_path: Path) -> None:
    result = ssd(command, "-u", unreadable_dir, "--out", tmp_path / "m.safetensors", "--device", "cpu")
    line = one_line_error(result, ExitCode.BAD_INPUT, "--unlabeled: none of the 2", "cut.png (unreadable image", "huge.png (too large")
    assert result.output.strip().splitlines() == [line]  # no plan, estimate or few-images warning first



def test_a_folder_larger_than_the_sample_names_its_unreadable_files_at_decoding(sample_dir: Path, tmp_path: Path) -> None:
    """Beyond the 256 sampled files the plan cannot know that none is readable; decoding says which."""
    folder = tmp_path / "cut"
    folder.mkdir()
    source = next((sample_dir / "normal").glob("*.png")).read_bytes()
    for i in range(257):
        (folder / f"{i:03d}.png").write_bytes(source[: len(source) // 2])
    result = ssd("train", "-u", folder, "--out", tmp_path / "m.safetensors", "--device", "cpu", "--pretrain-epochs", 0, "--epochs", 1)
    one_line_error(result, ExitCode.BAD_INPUT, "--unlabeled: none of the 257", "000.png (unreadable image", "and 254 more")


# --- 3. batch sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n,batch", [(2, 2), (3, 2), (5, 4), (9, 8), (17, 8), (16, 8), (7, 200)])
def test_training_set_sizes_around_every_batch_boundary(sample_dir: Path, tmp_path: Path, n: int, batch: int) -> None:
    """N = 1 (mod batch) used to crash batch norm on the last mini-batch of one image."""
    folder = copy_images(sample_dir, tmp_path / "u", n)
    out = tmp_path / "m.safetensors"
    ok(ssd("train", "-u", folder, "--batch-size", batch, "--out", out, *TINY))
    assert load_model(out).training["n_unlabeled"] == n


def test_a_single_training_image_is_a_clear_error(sample_dir: Path, tmp_path: Path) -> None:
    folder = copy_images(sample_dir, tmp_path / "u", 1)
    one_line_error(ssd("train", "-u", folder, "--out", tmp_path / "m.safetensors", *TINY), ExitCode.BAD_INPUT, "at least 2")
    one_line_error(ssd("pretrain", "-u", folder, "--out", tmp_path / "a.safetensors", "--epochs", 1), ExitCode.BAD_INPUT, "at least 2")


# --- 4. races -----------------------------------------------------------------------------------------


def test_writing_without_force_is_an_exclusive_create(tmp_path: Path, monkeypatch) -> None:
    """Another writer creates the file after our check: we must not overwrite it, nor report success."""
    target = tmp_path / "s.csv"
    real_fsync = os.fsync

    def other_writer_first(fd: int) -> None:
        real_fsync(fd)
        if not target.exists():
            target.write_text("theirs")

    monkeypatch.setattr(files_module.os, "fsync", other_writer_first)
    with pytest.raises(OutputExistsError):
        write_text_atomic(target, "ours", force=False)
    assert target.read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]  # no temporary file left
    write_text_atomic(target, "ours", force=True)
    assert target.read_text() == "ours"


@pytest.mark.slow
def test_a_second_benchmark_into_the_same_folder_stops_at_once(data_root: Path, tmp_path: Path) -> None:
    from ssd_cli.experiments.results import LOCK_FILE, results_lock

    out = tmp_path / "b"
    out.mkdir()
    args = ("benchmark", "mnist", "--data-root", data_root, "--out", out, "--preset", "quick", "--classes", 0, "--levels", 0,
            "--methods", "one_class_dsvdd", "--epochs", 1, "--pretrain-epochs", 1, "--device", "cpu")  # fmt: skip
    with results_lock(out):
        result = ssd(*args)
    one_line_error(result, ExitCode.OUTPUT_EXISTS, "another ssd benchmark", f"pid {os.getpid()}")
    assert not (out / "results.jsonl").exists()
    # a lock file left by a process that is gone does not block the next run
    (out / LOCK_FILE).write_text("pid 999999\n")
    ok(ssd(*args))
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1
    ok(ssd(*args))  # resumed: nothing run twice
    assert len((out / "results.jsonl").read_text().splitlines()) == 1


# --- 5. unwritable outputs ------------------------------------------------------------------------------


def test_an_unwritable_output_is_found_before_training(sample_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import ssd_cli.core.training as training

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    def must_not_train(*args, **kwargs):
        raise AssertionError("training started although the output cannot be written")

    monkeypatch.setattr(files_module.tempfile, "mkstemp", refuse)
    monkeypatch.setattr(training, "fit", must_not_train)
    result = ssd("train", "-u", sample_dir / "normal", "--out", tmp_path / "m.safetensors", *TINY)
    one_line_error(result, ExitCode.CANNOT_WRITE, "Read-only file system")


def test_disk_full_while_writing_leaves_nothing(model: Path, sample_dir: Path, tmp_path: Path, monkeypatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files_module.os, "fsync", full)
    result = ssd("score", model, sample_dir / "incoming", "--output", tmp_path / "s.csv", "--device", "cpu")
    one_line_error(result, ExitCode.CANNOT_WRITE, "No space left on device")
    assert list(tmp_path.iterdir()) == []


# --- 6. names and encodings -----------------------------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_scored_and_written(model: Path, sample_dir: Path, tmp_path: Path) -> None:
    folder = copy_images(sample_dir, tmp_path / "in", 2)
    source = next(folder.iterdir())
    weird = os.path.join(os.fsencode(folder), b"caf\xe9-[red]x.png")
    shutil.copy(source, weird)
    outputs = [tmp_path / "s.csv", tmp_path / "s.json", tmp_path / "r.html"]
    result = ssd("score", model, folder, "--output", outputs[0], "--device", "cpu")
    ok(result)
    assert "caf\\xe9-[red]x.png" in result.output  # escaped, and not taken as rich markup
    ok(ssd("score", model, folder, "--output", outputs[1], "--report", outputs[2], "--device", "cpu"))
    with open(outputs[0], newline="", encoding="utf-8") as f:
        names = [Path(r["path"]).name for r in csv.DictReader(f)]
    assert "caf\\xe9-[red]x.png" in names and len(names) == 3
    assert any(r["path"].endswith("caf\\xe9-[red]x.png") for r in json.loads(outputs[1].read_text(encoding="utf-8"))["scores"])
    assert "caf\\xe9-[red]x.png" in outputs[2].read_text(encoding="utf-8")


def test_labels_csv_with_bom_latin1_repeats_and_conflicts(model: Path, sample_dir: Path, tmp_path: Path) -> None:
    incoming = sorted((sample_dir / "incoming").glob("*.png"))
    with open(sample_dir / "incoming_labels.csv", newline="") as f:
        truth = {r["path"]: r["label"] for r in csv.DictReader(f)}
    rows = "".join(f"{sample_dir / p},{label}\n" for p, label in truth.items())
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfpath,label\n" + rows.encode())
    result = ssd("evaluate", model, "--labels", tmp_path / "bom.csv", "--device", "cpu")
    ok(result)
    assert "80 / 20" in result.output
    (tmp_path / "latin1.csv").write_bytes(("path,label\n" + rows + f"{incoming[0]},{truth['incoming/' + incoming[0].name]}\n").encode() + b"# caf\xe9\n")
    result = ssd("evaluate", model, "--labels", tmp_path / "latin1.csv", "--device", "cpu")
    ok(result)
    assert "read as Latin-1" in result.output and "1 repeated row(s) counted once" in result.output and "80 / 20" in result.output
    flipped = "anomaly" if truth["incoming/" + incoming[0].name] == "normal" else "normal"
    (tmp_path / "conflict.csv").write_text("path,label\n" + rows + f"{incoming[0]},{flipped}\n")
    one_line_error(ssd("evaluate", model, "--labels", tmp_path / "conflict.csv"), ExitCode.BAD_INPUT, "labeled both normal and anomaly", incoming[0].name)


def test_labeled_files_that_do_not_exist_are_left_out_by_name(model: Path, sample_dir: Path, tmp_path: Path) -> None:
    with open(sample_dir / "incoming_labels.csv", newline="") as f:
        rows = "".join(f"{sample_dir / r['path']},{r['label']}\n" for r in csv.DictReader(f))
    (tmp_path / "l.csv").write_text("path,label\n" + rows + "gone.png,anomaly\n")
    result = ssd("evaluate", model, "--labels", tmp_path / "l.csv", "--device", "cpu")
    ok(result)
    assert "1 listed file(s) do not exist" in result.output and "gone.png" in result.output and "80 / 20" in result.output


def test_the_same_file_as_normal_and_anomalous_is_refused(model: Path, sample_dir: Path) -> None:
    folder = sample_dir / "incoming"
    one_line_error(ssd("evaluate", model, "--normal", folder, "--anomalous", folder, "--device", "cpu"), ExitCode.BAD_INPUT, "both the normal and the anomalous")


def test_formula_like_names_are_neutralised_in_the_csv(model: Path, sample_dir: Path, tmp_path: Path, monkeypatch) -> None:
    source = next((sample_dir / "incoming").glob("*.png"))
    for name in ("=HYPERLINK(1).png", "+1.png", "-2.png", "@x.png"):
        shutil.copy(source, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    ok(ssd("score", model, "--output", "s.csv", "--device", "cpu", "--", "=HYPERLINK(1).png", "+1.png", "-2.png", "@x.png"))
    with open("s.csv", newline="") as f:
        cells = sorted(r["path"] for r in csv.DictReader(f))
    assert cells == ["'+1.png", "'-2.png", "'=HYPERLINK(1).png", "'@x.png"]


# --- 7. silent skips and option values ----------------------------------------------------------------------


def test_links_fifos_and_special_files_are_named(model: Path, sample_dir: Path, tmp_path: Path) -> None:
    folder = copy_images(sample_dir, tmp_path / "in", 2)
    real = sorted(folder.iterdir())
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "to-folder").symlink_to(sample_dir / "incoming")
    os.mkfifo(folder / "fifo.png")
    result = ssd("score", model, folder, "--device", "cpu")
    ok(result)
    assert "2 images" in result.output
    for name, why in [("dangling.png", "link to nothing"), ("loop.png", "link to nothing"), ("to-folder", "link to a folder"), ("fifo.png", "not a regular file")]:
        assert f"{name} (" in result.output and why in result.output, name
    result = ssd("score", model, folder / "fifo.png", real[0], "--device", "cpu")
    ok(result)
    assert "fifo.png (not a regular file" in result.output


def test_exif_orientation_is_applied(model: Path, tmp_path: Path) -> None:
    """A photo is scored as it is displayed: the same pixels stored turned with an EXIF tag score
    like the upright file."""
    rng = np.random.default_rng(0)
    upright = Image.fromarray(rng.integers(0, 256, (28, 40), dtype=np.uint8))
    upright.save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: displaying means turning 90 degrees clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "turned.png", exif=exif)
    from ssd_cli import Detector

    det = Detector.load(model, device="cpu")
    a, b = det.decision_function([tmp_path / "upright.png", tmp_path / "turned.png"])
    assert a == pytest.approx(b, rel=1e-6)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["score", "MODEL", "IN", "--batch-size", "0"], "--batch-size"),
        (["score", "MODEL", "IN", "--workers", "-1"], "--workers"),
        (["score", "MODEL", "IN", "--top-k", "-3"], "--top-k"),
        (["score", "MODEL", "IN", "--top", "-5"], "--top"),
        (["score", "MODEL", "IN", "--gallery", "-1"], "--gallery"),
        (["evaluate", "MODEL", "--labels", "LABELS", "--gallery", "-1"], "--gallery"),
        (["--threads", "100000", "score", "MODEL", "IN"], "--threads"),
        (["--threads", "0", "score", "MODEL", "IN"], "--threads"),
        (["evaluate", "MODEL", "--labels", "LABELS", "--recall", "0"], "--recall"),
        (["evaluate", "MODEL", "--labels", "LABELS", "--batch-size", "0"], "--batch-size"),
        (["benchmark", "mnist", "--nus", "0"], "--nus"),
        (["benchmark", "mnist", "--nus", "nan"], "--nus"),
        (["benchmark", "mnist", "--seeds", "0"], "--seeds"),
        (["benchmark", "mnist", "--pretrain-epochs", "-1", "--classes", "0", "--levels", "0"], "epochs"),
    ],
)
def test_bad_option_values_exit_2(model: Path, sample_dir: Path, data_root: Path, tmp_path: Path, args: list, needle: str) -> None:
    subst = {"MODEL": model, "IN": sample_dir / "incoming", "LABELS": sample_dir / "incoming_labels.csv"}
    args = [subst.get(a, a) for a in args]
    if "benchmark" in args:
        args += ["--data-root", data_root, "--out", tmp_path / "b", "--device", "cpu", "--yes"]
    result = ssd(*args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_the_same_folder_as_unlabeled_and_anomalous_says_what_was_counted(sample_dir: Path, tmp_path: Path) -> None:
    folder = copy_images(sample_dir, tmp_path / "u", 12)
    result = ssd("train", "-u", folder, "--anomalies", folder, "--out", tmp_path / "m.safetensors", *TINY)
    one_line_error(result, ExitCode.BAD_INPUT, "all 12 file(s) are also given as labeled", "counts once, as labeled")
    extra = copy_images(sample_dir, tmp_path / "more", 20)
    (extra / "sub").symlink_to(folder, target_is_directory=True)  # not followed: named, not counted
    result = ssd("train", "-u", folder, "-u", extra, "--anomalies", folder, "--batch-size", 8, "--out", tmp_path / "m.safetensors", *TINY)
    ok(result)
    assert "12 files are in both --unlabeled and --anomalies" in result.output
    saved = load_model(tmp_path / "m.safetensors")
    # the 12 shared files count once, as labeled; the other folder's 20 (copies, other paths) stay unlabeled
    assert (saved.training["n_unlabeled"], saved.training["n_labeled_anomalous"]) == (20, 12)
