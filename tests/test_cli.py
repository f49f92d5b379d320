"""The `ssd` command line end to end through Typer's CliRunner: help, train/pretrain/score, bad input."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score
from typer.main import get_command

import ssd_cli
from ssd_cli.cli import app
from ssd_cli.errors import ExitCode
from ssd_cli.io.modelfile import load_autoencoder, load_model

from conftest import ok, one_line_error, ssd

FAST = ["--device", "cpu", "--batch-size", "16"]


def make_truncated_png(path: Path, source: Path) -> None:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_dir(sample_dir: Path, tmp_path_factory) -> Path:
    """30 zeros from sample_data/normal: enough to run every command in well under a second."""
    root = tmp_path_factory.mktemp("small") / "normal"
    root.mkdir()
    for f in sorted((sample_dir / "normal").glob("*.png"))[:30]:
        shutil.copy(f, root)
    return root


@pytest.fixture(scope="module")
def cli_model(sample_dir: Path, tmp_path_factory) -> Path:
    """The README's example: train on sample_data/normal + anomalies, 5 + 5 epochs on the CPU."""
    out = tmp_path_factory.mktemp("e2e") / "model.safetensors"
    result = ssd(
        "train", "-u", sample_dir / "normal", "--anomalies", sample_dir / "anomalies",
        "--epochs", 5, "--pretrain-epochs", 5, "--out", out, "--device", "cpu",
    )  # fmt: skip
    ok(result)
    assert out.is_file()
    assert str(out) in result.output and "SS-DSVDD" in result.output
    return out


# --- help -----------------------------------------------------------------------------------------


def test_app_help_lists_commands_and_exit_codes() -> None:
    result = ssd("--help")
    ok(result)
    for name in ("pretrain", "train", "score"):
        assert name in result.output
    assert "Exit codes" in result.output
    assert "--version" in result.output


def test_help_and_version_answer_without_importing_torch() -> None:
    """`ssd --help`, `ssd --version` and every command's --help answer in well under a second: none
    of them imports torch (about 1.5 s here), which loads only when a command does work."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.main import get_command\n"
        "from ssd_cli.cli import app\n"
        "for args in [['--help'], ['--version'], *([name, '--help'] for name in get_command(app).commands)]:\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch loaded' if 'torch' in sys.modules else 'no torch', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("no torch"), result.stderr[-2000:]
    assert "Usage" in result.stdout and ssd_cli.__version__ in result.stdout


def test_version() -> None:
    result = ssd("--version")
    ok(result)
    assert ssd_cli.__version__ in result.output


COMMANDS = sorted(get_command(app).commands)


def test_required_commands_exist() -> None:
    assert {"pretrain", "train", "score"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_mentions_every_option(name: str) -> None:
    command = get_command(app).commands[name]
    result = ssd(name, "--help")
    ok(result)
    assert f"ssd {name}" in result.output
    for param in command.params:
        longs = [o for o in param.opts if o.startswith("--")]
        if longs:
            assert any(o in result.output for o in longs), f"{name} --help does not mention {longs}"
        else:  # an argument
            shown = {param.name.lower(), param.name.replace("_", "-").lower()} | ({param.metavar.lower()} if param.metavar else set())
            assert any(s in result.output.lower() for s in shown), f"{name} --help does not mention argument {param.name}"
        if getattr(param, "help", None) is not None:
            assert param.help, f"{name}: {param.opts} has an empty help text"


# --- end to end -----------------------------------------------------------------------------------


def read_score_csv(path: Path) -> tuple[str, list[dict]]:
    """The header line and the rows, read as any CSV reader would: no line is skipped."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return path.read_text(encoding="utf-8").splitlines()[0], rows


def test_train_then_score_csv(cli_model: Path, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    result = ssd("score", cli_model, sample_dir / "incoming", "--output", out, "--device", "cpu")
    ok(result)
    assert "100 images" in result.output
    assert out.is_file()
    first, rows = read_score_csv(out)
    assert first == "path,score,normalised_score,anomalous,rank"  # a plain CSV: the header comes first
    assert len(rows) == 100
    incoming = {p.resolve() for p in (sample_dir / "incoming").glob("*.png")}
    assert {Path(r["path"]).resolve() for r in rows} == incoming
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) > 90  # not a collapsed, constant detector
    threshold = load_model(cli_model).threshold
    assert [r["anomalous"] == "1" for r in rows] == [s > threshold for s in scores]
    assert [int(r["rank"]) for r in rows] == list(range(1, 101))
    assert [float(r["normalised_score"]) for r in rows] == pytest.approx([s / threshold for s in scores])
    # the detector works: anomalies come first (the 5 + 5 epoch model is weak but well above chance)
    with open(sample_dir / "incoming_labels.csv", newline="") as f:
        truth = {(sample_dir / r["path"]).resolve(): r["label"] == "anomaly" for r in csv.DictReader(f)}
    auc = roc_auc_score([truth[Path(r["path"]).resolve()] for r in rows], scores)
    assert auc > 0.75, f"AUC {auc:.3f}"


def test_train_then_score_json(cli_model: Path, sample_dir: Path, tmp_path: Path) -> None:
    out_json, out_csv = tmp_path / "s.json", tmp_path / "s.csv"
    ok(ssd("score", cli_model, sample_dir / "incoming", "--output", out_json, "--device", "cpu"))
    doc = json.loads(out_json.read_text(encoding="utf-8"))
    assert doc["tool_version"] == ssd_cli.__version__
    assert doc["threshold"] == load_model(cli_model).threshold
    assert len(doc["scores"]) == 100
    scores = [r["score"] for r in doc["scores"]]
    assert scores == sorted(scores, reverse=True)
    assert all(set(r) == {"path", "score", "normalised_score", "anomalous", "rank"} for r in doc["scores"])
    assert doc["n_scored"] == 100 and doc["threshold_rule"].startswith("the model's")
    # CSV and JSON agree exactly
    ok(ssd("score", cli_model, sample_dir / "incoming", "--output", out_csv, "--device", "cpu"))
    _, rows = read_score_csv(out_csv)
    assert [(r["path"], float(r["score"])) for r in rows] == [(r["path"], r["score"]) for r in doc["scores"]]


def test_score_threshold_option_and_top(cli_model: Path, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    result = ssd("score", cli_model, sample_dir / "incoming", "--threshold", 0, "--top", 3, "--output", out, "--device", "cpu")
    ok(result)
    assert "100 anomalous" in result.output and "top 3 shown" in result.output
    _, rows = read_score_csv(out)
    assert all(r["anomalous"] == "1" for r in rows)


def test_train_metadata_from_cli(cli_model: Path) -> None:
    m = load_model(cli_model)
    t = m.training
    assert (t["n_unlabeled"], t["n_labeled_normal"], t["n_labeled_anomalous"]) == (400, 0, 45)
    assert t["epochs"] == 5 and t["pretrain_epochs"] == 5 and t["pretrained"] is True
    assert t["device"] == "cpu" and t["seed"] == 0


def test_pretrain_then_train_pretrained(small_dir: Path, tmp_path: Path) -> None:
    ae_path, model_path = tmp_path / "ae.safetensors", tmp_path / "model.safetensors"
    result = ssd("pretrain", "-u", small_dir, "--epochs", 2, "--out", ae_path, *FAST)
    ok(result)
    ae = load_autoencoder(ae_path)
    assert ae.training["n_unlabeled"] == 30 and ae.training["epochs"] == 2
    # a learning rate of ~0 leaves phi where the autoencoder put it: proof that it was used
    result = ssd("train", "-u", small_dir, "--pretrained", ae_path, "--epochs", 1, "--lr", 1e-12, "--out", model_path, *FAST)
    ok(result)
    m = load_model(model_path)
    assert m.training["pretrained"] is True and m.training["pretrained_from"] == str(ae_path)
    assert m.training["pretrain_epochs"] == 0
    for key, value in m.encoder_state.items():
        if value.is_floating_point() and "running" not in key:
            torch.testing.assert_close(value, ae.state[f"encoder.{key}"], rtol=0, atol=1e-6)
    # the autoencoder file is not a model, and a model file is not an autoencoder
    one_line_error(ssd("score", ae_path, small_dir, "--device", "cpu"), ExitCode.BAD_MODEL, "autoencoder")
    one_line_error(
        ssd("train", "-u", small_dir, "--pretrained", model_path, "--out", tmp_path / "x.safetensors", *FAST),
        ExitCode.BAD_MODEL,
    )


def test_soft_boundary_threshold_is_radius(small_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sb.safetensors"
    result = ssd(
        "train", "-u", small_dir, "--objective", "soft-boundary", "--nu", 0.2, "--epochs", 2,
        "--pretrain-epochs", 0, "--out", out, *FAST,
    )  # fmt: skip
    ok(result)
    assert "soft-boundary" in result.output and "radius" in result.output
    m = load_model(out)
    assert m.objective.value == "soft-boundary" and m.nu == 0.2
    assert m.radius > 0
    assert m.threshold == m.radius
    assert "radius" in m.threshold_rule


# --- bad input ------------------------------------------------------------------------------------


@pytest.fixture()
def folders(tmp_path: Path, small_dir: Path) -> dict[str, Path]:
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "text"
    text.mkdir()
    (text / "readme.txt").write_text("hi")
    (text / "data.csv").write_text("a,b\n")
    broken = tmp_path / "broken"
    broken.mkdir()
    for i, src in enumerate(sorted(small_dir.glob("*.png"))[:3]):
        make_truncated_png(broken / f"b{i}.png", src)
    (broken / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    return {"missing": tmp_path / "does-not-exist", "empty": empty, "text": text, "broken": broken}


@pytest.mark.parametrize("kind,needle", [("missing", "does not exist"), ("empty", "no image files"), ("text", "no image files"), ("broken", "could be read")])
def test_train_bad_folders_exit_3(kind: str, needle: str, folders, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    result = ssd("train", "-u", folders[kind], "--epochs", 1, "--pretrain-epochs", 0, "--out", out, *FAST)
    one_line_error(result, ExitCode.BAD_INPUT, needle, str(folders[kind]) if kind != "broken" else "--unlabeled")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "broken"])
def test_score_bad_folders_exit_3(kind: str, folders, cli_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    result = ssd("score", cli_model, folders[kind], "--output", out, "--device", "cpu")
    one_line_error(result, ExitCode.BAD_INPUT)
    assert not out.exists()


def test_bad_labeled_folder_exit_3(small_dir: Path, folders, tmp_path: Path) -> None:
    result = ssd("train", "-u", small_dir, "--anomalies", folders["empty"], "--epochs", 1, "--pretrain-epochs", 0, "--out", tmp_path / "m.safetensors", *FAST)
    one_line_error(result, ExitCode.BAD_INPUT, "--anomalies")


def test_one_truncated_image_is_skipped_with_a_warning(small_dir: Path, cli_model: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(small_dir, mixed)
    make_truncated_png(mixed / "zz-truncated.png", next(small_dir.glob("*.png")))
    out = tmp_path / "m.safetensors"
    result = ssd("train", "-u", mixed, "--epochs", 1, "--pretrain-epochs", 0, "--out", out, *FAST)
    ok(result)
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:") and "zz-truncated.png" in line]
    assert len(warnings) == 1 and "skipped 1 file" in warnings[0], result.output  # named once, not once per look
    assert load_model(out).training["n_unlabeled"] == 30

    scores = tmp_path / "s.csv"
    result = ssd("score", cli_model, mixed, "--output", scores, "--device", "cpu")
    ok(result)
    assert "zz-truncated.png" in result.output and "warning:" in result.output
    _, rows = read_score_csv(scores)
    assert len(rows) == 30 and not any("zz-truncated" in r["path"] for r in rows)


@pytest.mark.parametrize("content", [b"", b"not a model at all\n", b"\xff" * 64])
def test_not_a_model_file_exit_4(content: bytes, small_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(content)
    one_line_error(ssd("score", fake, small_dir, "--device", "cpu"), ExitCode.BAD_MODEL, str(fake))
    one_line_error(ssd("score", tmp_path / "absent.safetensors", small_dir, "--device", "cpu"), ExitCode.BAD_MODEL, "does not exist")


def test_existing_out_is_refused_before_any_work(small_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from ssd_cli.data import images
    from ssd_cli.io import modelfile
    from ssd_cli.core import pipeline

    def must_not_run(*args, **kwargs):
        raise AssertionError("work started before the output check")

    for module, name in [(images, "load_folder"), (pipeline, "train_model"), (pipeline, "pretrain"), (modelfile, "load_model")]:
        monkeypatch.setattr(module, name, must_not_run)
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"old model")
    start = time.perf_counter()
    result = ssd("train", "-u", small_dir, "--out", out, "--device", "cpu")  # default 150 + 150 epochs
    one_line_error(result, ExitCode.OUTPUT_EXISTS, str(out), "--force")
    assert time.perf_counter() - start < 5
    assert out.read_bytes() == b"old model"

    one_line_error(ssd("pretrain", "-u", small_dir, "--out", out, "--device", "cpu"), ExitCode.OUTPUT_EXISTS)
    assert out.read_bytes() == b"old model"

    scores = tmp_path / "s.csv"
    scores.write_text("old scores")
    one_line_error(ssd("score", out, small_dir, "--output", scores, "--device", "cpu"), ExitCode.OUTPUT_EXISTS, "--force")
    assert scores.read_text() == "old scores"


def test_force_overwrites(small_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"old model")
    ok(ssd("train", "-u", small_dir, "--epochs", 1, "--pretrain-epochs", 0, "--out", out, "--force", *FAST))
    assert load_model(out).training["n_unlabeled"] == 30
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left behind


def test_score_output_must_be_csv_or_json(cli_model: Path, small_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.txt"
    one_line_error(ssd("score", cli_model, small_dir, "--output", out, "--device", "cpu"), ExitCode.USAGE, "x.txt")
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_usage_error(small_dir: Path, cli_model: Path, tmp_path: Path) -> None:
    one_line_error(ssd("train", "-u", small_dir, "--out", tmp_path / "m.safetensors", "--device", "cuda"), ExitCode.USAGE, "CUDA")
    one_line_error(ssd("score", cli_model, small_dir, "--device", "cuda"), ExitCode.USAGE, "CUDA")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--image-size", "30"], "multiple of"),
        (["--image-size", "0"], "--image-size"),
        (["--arch", "mnist", "--image-size", "30"], "multiple of 4"),
        (["--channels", "2"], "channels"),
        (["--arch", "resnet"], "unknown architecture"),
        (["--nu", "0"], "nu"),
        (["--nu", "1.5"], "nu"),
        (["--eta", "0"], "eta"),
        (["--epochs", "-1"], "epochs"),
        (["--batch-size", "0"], "batch size"),
        (["--lr", "0"], "lr"),
        (["--lr", "nan"], "lr"),
        (["--lr", "inf"], "lr"),
        (["--pretrain-lr", "nan"], "lr"),
        (["--weight-decay", "nan"], "weight decay"),
        (["--pretrain-weight-decay", "inf"], "weight decay"),
        (["--eta", "nan"], "eta"),
        (["--eta", "inf"], "eta"),
        (["--nu", "nan"], "nu"),
        (["--batch-size", "1"], "batch size"),
        (["--lr-milestones", "-5"], "milestones"),
        (["--lr-milestones", "0"], "milestones"),
        (["--pretrain-epochs", "-2"], "epochs"),
        (["--threshold-quantile", "nan"], "--threshold-quantile"),
        (["--threshold-quantile", "1"], "--threshold-quantile"),
        (["--lr-milestones", "ten"], "--lr-milestones"),
        (["--device", "tpu"], "--device"),
        # finite but absurd: torch's float32 arithmetic overflowed on these (exit 1) or memory ran out
        (["--lr", "1e38"], "lr"),
        (["--pretrain-lr", "1e38"], "lr"),
        (["--weight-decay", "1e300"], "weight decay"),
        (["--pretrain-weight-decay", "1e300"], "weight decay"),
        (["--eta", "1e300"], "eta"),
        (["--outlier-weight", "1e300"], "outlier weight"),
        (["--seed", "99999999999999999999999"], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--patches-per-image", "1000000000000"], "--patches-per-image"),
    ],
)
def test_bad_train_options_exit_2(args: list[str], needle: str, small_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from ssd_cli.data import images

    monkeypatch.setattr(images, "load_folder", lambda *a, **k: pytest.fail("options must be checked before loading"))
    out = tmp_path / "m.safetensors"
    one_line_error(ssd("train", "-u", small_dir, "--out", out, "--device", "cpu", *args), ExitCode.USAGE, needle)
    assert not out.exists()


@pytest.mark.parametrize("option,value", [("--pretrain-epochs", 5), ("--pretrain-lr", 1e-3), ("--pretrain-lr-milestones", "3"), ("--pretrain-weight-decay", 0.1)])
def test_pretrained_with_pretraining_settings_is_refused(option: str, value: object, small_dir: Path, tmp_path: Path) -> None:
    """A --pretrained file replaces the pretraining: its settings would be silently ignored."""
    out = tmp_path / "m.safetensors"
    one_line_error(ssd("train", "-u", small_dir, "--pretrained", tmp_path / "ae.safetensors", option, value, "--out", out), ExitCode.USAGE, "--pretrained", option, "not both")
    assert not out.exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "-u", "x", "--objective", "bogus"], "--objective"),
        (["train", "-u", "x", "--nu", "abc"], "--nu"),
        (["train"], "--unlabeled"),
        (["score"], "model"),
        (["info"], "model"),
        (["frobnicate"], "frobnicate"),
        (["--threads", "0", "info", "m"], "--threads"),
        (["--max-image-pixels", "0", "info", "m"], "--max-image-pixels"),
        (["score", "m", "d", "--top-k", "1.5"], "--top-k"),
        (["score", "m", "d", "--no-such-option"], "--no-such-option"),
        (["score", "m", "-weird.png"], "./-name.png"),
        (["evaluate", "m", "--normal"], "--normal"),
        (["score", "m", "d", "--top-k", "3", "--threshold", "1"], "at most one of"),  # found by ssd, not by Click
        (["train", "-u", "x", "--nu", "0"], "nu"),
    ],
)
def test_no_usage_error_prints_more_than_one_line(args: list[str], needle: str, tmp_path: Path, monkeypatch) -> None:
    """Click's own errors (unknown option, wrong type, missing argument) are one `error:` line with
    the --help hint, as ssd's own are; never its boxed block of several lines."""
    monkeypatch.chdir(tmp_path)
    result = ssd(*args)
    line = one_line_error(result, ExitCode.USAGE, needle)
    assert result.output.strip().splitlines() == [line]
    if needle not in ("at most one of", "nu"):
        assert "--help'" in line


def test_ssd_alone_still_shows_the_help() -> None:
    result = ssd()
    assert result.exit_code == ExitCode.USAGE
    assert "Usage" in result.output and "train" in result.output


def test_ctrl_c_during_train_speaks_of_training_not_of_a_benchmark(small_dir: Path, tmp_path: Path, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("ssd_cli.engine.run_training", interrupted)
    result = ssd("train", "-u", small_dir, "--out", tmp_path / "m.safetensors", *FAST)
    line = one_line_error(result, ExitCode.INTERRUPTED, "interrupted", "no half-written file")
    assert "benchmark" not in line and "resume" not in line
    assert not (tmp_path / "m.safetensors").exists()


# --- regressions: zero epochs and a constant dataset ---------------------------------------------


def test_zero_epochs_is_not_an_internal_error(small_dir: Path, tmp_path: Path) -> None:
    result = ssd("train", "-u", small_dir, "--epochs", 0, "--pretrain-epochs", 0, "--out", tmp_path / "m.safetensors", *FAST)
    ok(result)


def test_constant_black_images_are_bad_input(tmp_path: Path) -> None:
    from PIL import Image

    black = tmp_path / "black"
    black.mkdir()
    for i in range(8):
        Image.new("L", (28, 28)).save(black / f"{i}.png")
    result = ssd("train", "-u", black, "--epochs", 1, "--pretrain-epochs", 0, "--out", tmp_path / "m.safetensors", *FAST)
    one_line_error(result, ExitCode.BAD_INPUT, "center")
