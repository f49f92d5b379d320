"""Model files: exact round trips, complete metadata, clear refusals, atomic writes, no pickle."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import ssd_cli
from ssd_cli import files, modelfile, pipeline
from ssd_cli.config import Objective, OptimConfig, Preprocessing, TrainConfig
from ssd_cli.detector import Detector
from ssd_cli.errors import ExitCode, ModelFileError, OutputExistsError, UsageError
from ssd_cli.modelfile import (
    SavedAutoencoder,
    load_autoencoder,
    load_model,
    save_autoencoder,
    save_model,
)
from ssd_cli.nets import AutoEncoder, get_spec
from ssd_cli.preprocess import Preprocessor

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def soft_model(sample_images):
    """A small soft-boundary model (GCN preprocessing, labeled normals and anomalies)."""
    spec = get_spec("mnist")
    u, n, a = sample_images.normal[:60], sample_images.normal[60:70], sample_images.anomalies[:6]
    pre = Preprocessor.fit(Preprocessing.GCN, u)
    x, y = pipeline.training_tensors(pre, CPU, u, n, a)
    cfg = TrainConfig(objective=Objective.SOFT_BOUNDARY, nu=0.2, eta=2.0, optim=OptimConfig(epochs=2, lr=1e-3, batch_size=16))
    return pipeline.train_model(spec, x, y, cfg, pre, seed=3, summary={"note": "test"})


@pytest.fixture()
def models(sample_model, soft_model):
    return {"one-class": sample_model, "soft-boundary": soft_model}


@pytest.mark.parametrize("kind", ["one-class", "soft-boundary"])
def test_round_trip_scores_are_bit_identical(kind: str, models, sample_images, tmp_path: Path) -> None:
    saved = models[kind]
    path = tmp_path / "m.safetensors"
    save_model(path, saved)
    loaded = load_model(path)
    before = Detector(saved, CPU).score(sample_images.incoming)
    after = Detector(loaded, CPU).score(sample_images.incoming)
    assert torch.equal(before, after)
    assert loaded.objective is saved.objective
    assert (loaded.nu, loaded.eta, loaded.threshold, loaded.radius) == (saved.nu, saved.eta, saved.threshold, saved.radius)
    assert loaded.threshold_rule == saved.threshold_rule
    assert loaded.spec == saved.spec
    assert loaded.preprocessor == saved.preprocessor
    assert torch.equal(loaded.c, saved.c.cpu())
    assert loaded.encoder_state.keys() == saved.encoder_state.keys()
    for k, v in saved.encoder_state.items():
        assert torch.equal(loaded.encoder_state[k], v.cpu()), k
    assert loaded.training == json.loads(json.dumps(saved.training))
    assert loaded.tool_version == ssd_cli.__version__


def test_soft_boundary_threshold_is_radius(soft_model, tmp_path: Path) -> None:
    save_model(tmp_path / "m.safetensors", soft_model)
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.radius > 0
    assert loaded.threshold == loaded.radius


@pytest.mark.parametrize("kind", ["one-class", "soft-boundary"])
def test_metadata_is_complete(kind: str, models, tmp_path: Path) -> None:
    saved = models[kind]
    path = tmp_path / "m.safetensors"
    save_model(path, saved)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert meta["format"] == "ssd-model"
    assert meta["format_version"] == str(modelfile.FORMAT_VERSION)
    assert meta["tool_version"] == ssd_cli.__version__
    assert meta["architecture"] == "mnist"
    assert (meta["channels"], meta["image_size"]) == ("1", "28")
    assert meta["objective"] == kind
    assert float(meta["nu"]) == saved.nu and float(meta["eta"]) == saved.eta
    assert float(meta["threshold"]) == saved.threshold
    assert json.loads(meta["preprocessing"])["kind"] == saved.preprocessor.kind.value
    training = json.loads(meta["training"])
    for key in ("n_unlabeled", "n_labeled_normal", "n_labeled_anomalous", "epochs", "final_loss", "seed", "config"):
        assert key in training, key
    assert training["config"]["objective"] == kind
    assert {"c", "radius"} <= keys
    assert all(k in ("c", "radius") or k.startswith("encoder.") for k in keys)


def test_gcn_statistics_survive_the_round_trip(soft_model, sample_images, tmp_path: Path) -> None:
    pre = soft_model.preprocessor
    assert pre.kind is Preprocessing.GCN
    assert (pre.low, pre.high) != (0.0, 1.0)
    save_model(tmp_path / "m.safetensors", soft_model)
    loaded = load_model(tmp_path / "m.safetensors").preprocessor
    assert loaded.kind is Preprocessing.GCN
    assert (loaded.low, loaded.high) == (pre.low, pre.high)  # exact, not approximately
    assert torch.equal(loaded(sample_images.incoming), pre(sample_images.incoming))


def test_autoencoder_round_trip(tmp_path: Path) -> None:
    spec = get_spec("fashion-mnist", channels=3, image_size=16)
    torch.manual_seed(0)
    ae = AutoEncoder(spec)
    pre = Preprocessor(Preprocessing.GCN, -1.5, 7.25)
    save_autoencoder(tmp_path / "ae.safetensors", SavedAutoencoder(spec, pre, ae.state_dict(), {"epochs": 3}))
    loaded = load_autoencoder(tmp_path / "ae.safetensors")
    assert loaded.spec == spec and loaded.preprocessor == pre and loaded.training == {"epochs": 3}
    x = torch.rand(2, 3, 16, 16)
    ae.eval()
    again = loaded.autoencoder().eval()
    assert torch.equal(ae(x), again(x))


# --- refusals ---------------------------------------------------------------------------------


def expect_model_error(path: Path, *needles: str, loader=load_model) -> str:
    with pytest.raises(ModelFileError) as info:
        loader(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for needle in needles:
        assert needle in message, message
    assert info.value.exit_code == ExitCode.BAD_MODEL
    return message


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, I am a text file\n", bytes(range(256)) * 4, b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}"],
    ids=["empty", "text", "binary", "bad-header"],
)
def test_not_a_safetensors_file(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    expect_model_error(path, "not an ssd model file")


def test_missing_file(tmp_path: Path) -> None:
    expect_model_error(tmp_path / "nope.safetensors", "does not exist")


def test_foreign_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(path))  # no metadata at all
    expect_model_error(path, "not written by ssd")
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})  # someone else's metadata
    expect_model_error(path, "not written by ssd")


def test_autoencoder_and_model_files_are_not_interchangeable(sample_model, tmp_path: Path) -> None:
    ae_path, model_path = tmp_path / "ae.safetensors", tmp_path / "model.safetensors"
    spec = sample_model.spec
    save_autoencoder(ae_path, SavedAutoencoder(spec, sample_model.preprocessor, AutoEncoder(spec).state_dict()))
    save_model(model_path, sample_model)
    expect_model_error(ae_path, "not an ssd model file", "autoencoder")
    expect_model_error(model_path, "not an ssd autoencoder file", "ssd-model", loader=load_autoencoder)


def rewrite(src: Path, dst: Path, *, drop: tuple[str, ...] = (), **meta: str) -> None:
    """Copy a model file with changed metadata or tensors left out."""
    with safe_open(str(src), framework="pt") as f:
        metadata = dict(f.metadata())
    tensors = {k: v for k, v in load_file(str(src)).items() if k not in drop}
    metadata.update(meta)
    save_file(tensors, str(dst), metadata=metadata)


@pytest.mark.parametrize("version", ["2", "99", "x", ""])
def test_unknown_format_version(version: str, sample_model, tmp_path: Path) -> None:
    src, dst = tmp_path / "m.safetensors", tmp_path / "future.safetensors"
    save_model(src, sample_model)
    rewrite(src, dst, format_version=version)
    message = expect_model_error(dst, "format version")
    assert "upgrade" in message
    if version:
        assert f"version {version}" in message


def test_damaged_model_files(sample_model, tmp_path: Path) -> None:
    src = tmp_path / "m.safetensors"
    save_model(src, sample_model)
    rewrite(src, tmp_path / "no-c.safetensors", drop=("c",))
    expect_model_error(tmp_path / "no-c.safetensors", "damaged")
    rewrite(src, tmp_path / "no-weights.safetensors", drop=("encoder.dense.0.weight",))
    expect_model_error(tmp_path / "no-weights.safetensors", "damaged")
    rewrite(src, tmp_path / "arch.safetensors", architecture="resnet")
    expect_model_error(tmp_path / "arch.safetensors", "architecture")
    rewrite(src, tmp_path / "objective.safetensors", objective="two-class")
    expect_model_error(tmp_path / "objective.safetensors", "damaged")
    # an architecture that exists but does not match the weights
    rewrite(src, tmp_path / "fashion.safetensors", architecture="fashion-mnist")
    expect_model_error(tmp_path / "fashion.safetensors", "damaged")


# --- writing ------------------------------------------------------------------------------------


def test_check_writable(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    files.check_writable(path, force=False)  # new file: fine
    path.write_text("old")
    with pytest.raises(OutputExistsError, match="--force") as info:
        files.check_writable(path, force=False)
    assert info.value.exit_code == ExitCode.OUTPUT_EXISTS
    files.check_writable(path, force=True)
    with pytest.raises(OutputExistsError):
        files.check_writable(tmp_path, force=True)  # a folder is never overwritten
    with pytest.raises(UsageError, match="does not exist") as missing:
        files.check_writable(tmp_path / "missing" / "out.csv", force=True)
    assert missing.value.exit_code == ExitCode.USAGE
    assert path.read_text() == "old"


def temp_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".part") or p.name.startswith(".")]


def test_write_atomic_writes_and_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    files.write_atomic(path, b"first", force=False)
    assert path.read_bytes() == b"first"
    with pytest.raises(OutputExistsError):
        files.write_atomic(path, b"second", force=False)
    assert path.read_bytes() == b"first"
    files.write_atomic(path, b"second", force=True)
    assert path.read_bytes() == b"second"
    assert temp_leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_write_atomic_respects_umask(tmp_path: Path) -> None:
    """A model or score file must be as readable as any other new file, not 0600 like a temp file."""
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "scores.csv"
    files.write_atomic(path, b"x", force=False)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_atomic_failure_keeps_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"precious")

    class Boom(Exception):
        pass

    def failing_replace(src, dst):
        raise Boom("disk full")

    monkeypatch.setattr(files.os, "replace", failing_replace)
    with pytest.raises(Boom):
        files.write_atomic(path, b"new contents", force=True)
    monkeypatch.undo()
    assert path.read_bytes() == b"precious"
    assert temp_leftovers(tmp_path) == []

    # data that cannot be written at all (not bytes): same guarantees
    with pytest.raises(TypeError):
        files.write_atomic(path, "not bytes", force=True)  # type: ignore[arg-type]
    assert path.read_bytes() == b"precious"
    assert temp_leftovers(tmp_path) == []


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "new.safetensors"

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(path, b"data", force=False)
    monkeypatch.undo()
    assert not path.exists()
    assert temp_leftovers(tmp_path) == []


def test_save_model_refuses_existing_file(sample_model, tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        save_model(path, sample_model)
    assert path.read_bytes() == b"keep me"
    save_model(path, sample_model, force=True)
    assert load_model(path).threshold == sample_model.threshold


def test_no_pickle_anywhere_in_the_package() -> None:
    package = Path(ssd_cli.__file__).parent
    sources = sorted(package.rglob("*.py"))
    assert len(sources) > 10
    forbidden = re.compile(r"^\s*(import\s+(c?pickle|dill|joblib)|from\s+(c?pickle|dill|joblib)\s+import)|torch\.load\s*\(|torch\.save\s*\(|pickle\.loads?\s*\(|allow_pickle\s*=\s*True|weights_only\s*=\s*False", re.M)
    offenders = [f"{p.name}: {m.group(0).strip()}" for p in sources for m in forbidden.finditer(p.read_text(encoding="utf-8"))]
    assert offenders == []
