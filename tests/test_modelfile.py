"""Model files: exact round trips, complete metadata, clear refusals, atomic writes, no pickle."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import ssd_cli
from ssd_cli.io import files, modelfile
from ssd_cli.core import pipeline
from ssd_cli.core.config import Objective, OptimConfig, Preprocessing, Resize, TrainConfig
from ssd_cli.core.scoring import Scorer
from ssd_cli.errors import ExitCode, ModelFileError, OutputExistsError, UsageError
from ssd_cli.core.model import SavedAutoencoder, SavedModel
from ssd_cli.io.modelfile import load_autoencoder, load_model, save_autoencoder, save_model
from ssd_cli.core.nets import AutoEncoder, LeNetSpec, architectures, get_spec
from ssd_cli.core.preprocess import Preprocessor

from conftest import rewrite

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
    before = Scorer(saved, CPU).score(sample_images.incoming)
    after = Scorer(loaded, CPU).score(sample_images.incoming)
    assert torch.equal(before, after)
    assert loaded.objective is saved.objective
    assert (loaded.nu, loaded.eta, loaded.threshold, loaded.radius) == (saved.nu, saved.eta, saved.threshold, saved.radius)
    assert loaded.threshold_rule == saved.threshold_rule
    assert loaded.spec == saved.spec
    assert loaded.resize is saved.resize is Resize.SQUASH
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
    assert json.loads(meta["network"]) == saved.spec.to_dict()
    assert meta["resize"] == "squash"
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
    save_autoencoder(tmp_path / "ae.safetensors", SavedAutoencoder(spec, pre, ae.state_dict(), {"epochs": 3}, resize=Resize.PAD))
    loaded = load_autoencoder(tmp_path / "ae.safetensors")
    assert loaded.spec == spec and loaded.preprocessor == pre and loaded.training == {"epochs": 3}
    assert loaded.resize is Resize.PAD
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


@pytest.mark.parametrize("version", ["5", "99", "x", "", "0", "9" * 5000])
def test_unknown_format_version(version: str, sample_model, tmp_path: Path) -> None:
    src, dst = tmp_path / "m.safetensors", tmp_path / "future.safetensors"
    save_model(src, sample_model)
    rewrite(src, dst, format_version=version)
    message = expect_model_error(dst, "format version")
    assert "upgrade" in message
    if version:
        assert f"version {version[:20]}" in message
    assert len(message) < 400


def test_damaged_model_files(sample_model, tmp_path: Path) -> None:
    src = tmp_path / "m.safetensors"
    save_model(src, sample_model)
    rewrite(src, tmp_path / "no-c.safetensors", drop=("c",))
    expect_model_error(tmp_path / "no-c.safetensors", "damaged")
    rewrite(src, tmp_path / "no-weights.safetensors", drop=("encoder.dense.0.weight",))
    expect_model_error(tmp_path / "no-weights.safetensors", "damaged")
    rewrite(src, tmp_path / "arch.safetensors", architecture="resnet")
    expect_model_error(tmp_path / "arch.safetensors", "damaged", "architecture")
    rewrite(src, tmp_path / "objective.safetensors", objective="two-class")
    expect_model_error(tmp_path / "objective.safetensors", "damaged")
    # the version-1 keys must agree with the network description
    rewrite(src, tmp_path / "fashion.safetensors", architecture="fashion-mnist")
    expect_model_error(tmp_path / "fashion.safetensors", "damaged", "architecture")


# --- every registered network, version 1 files ------------------------------------------------


def tiny_model(arch: str, resize: Resize) -> tuple[SavedModel, AutoEncoder, torch.Tensor]:
    """1 epoch of pretraining and of training on 6 random images at the network's size (cheap)."""
    spec = get_spec(arch)
    g = torch.Generator().manual_seed(len(arch))
    images = torch.randint(0, 256, (8, spec.channels, spec.image_size, spec.image_size), generator=g, dtype=torch.uint8)
    train = images[:6]
    pre = Preprocessor.fit(Preprocessing.GCN, train[:4])
    x, y = pipeline.training_tensors(pre, CPU, train[:4], None, train[4:])
    optim = OptimConfig(epochs=1, lr=1e-3, batch_size=8)
    ae, _ = pipeline.pretrain(spec, x[y == pipeline.UNLABELED], replace(optim, weight_decay=0.5e-3), seed=0)
    saved = pipeline.train_model(spec, x, y, TrainConfig(optim=optim), pre, seed=0, autoencoder=ae)
    return replace(saved, resize=resize), ae, images


@pytest.mark.parametrize("arch", architectures())
def test_every_network_round_trips_bit_identically(arch: str, tmp_path: Path) -> None:
    resize = list(Resize)[architectures().index(arch) % len(Resize)]
    saved, ae, images = tiny_model(arch, resize)
    save_model(tmp_path / "m.safetensors", saved)
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.spec == saved.spec and loaded.resize is resize
    before = Scorer(saved, CPU).score(images)
    assert before.shape == (len(images),) and bool(torch.isfinite(before).all()) and before.max() > 0
    assert torch.equal(Scorer(loaded, CPU).score(images), before)

    save_autoencoder(tmp_path / "ae.safetensors", SavedAutoencoder(saved.spec, saved.preprocessor, ae.state_dict(), resize=resize))
    again = load_autoencoder(tmp_path / "ae.safetensors")
    assert again.spec == saved.spec and again.resize is resize and again.preprocessor == saved.preprocessor
    x = saved.preprocessor(images[:2]).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # training left the weights channels-last, which changes the summation order
        assert torch.equal(again.autoencoder().to(memory_format=torch.channels_last).eval()(x), ae.eval()(x))


def test_an_unregistered_network_loads_from_its_description(tmp_path: Path) -> None:
    """The file states its network: no registry lookup, so widths changed later cannot break it."""
    spec = LeNetSpec("someone-elses", channels=3, image_size=48, conv_filters=(4, 8, 8), dense_units=(16, 8), kernel_size=3)
    torch.manual_seed(0)
    ae = AutoEncoder(spec)
    save_autoencoder(tmp_path / "ae.safetensors", SavedAutoencoder(spec, Preprocessor(), ae.state_dict()))
    assert load_autoencoder(tmp_path / "ae.safetensors").spec == spec


def write_v1_model(path: Path, m: SavedModel) -> None:
    """A model file exactly as ssd 0.1 wrote it (format version 1: no network, no resize)."""
    tensors = {"encoder." + k: v.detach().to("cpu").contiguous() for k, v in m.encoder_state.items()}
    tensors["c"] = m.c.detach().to("cpu", torch.float32).contiguous()
    tensors["radius"] = torch.tensor([m.radius], dtype=torch.float32)
    meta = {
        "format": "ssd-model",
        "format_version": "1",
        "tool": "ssd",
        "tool_version": "0.1.0",
        "architecture": m.spec.name,
        "channels": str(m.spec.channels),
        "image_size": str(m.spec.image_size),
        "preprocessing": m.preprocessor.to_json(),
        "training": json.dumps(m.training),
        "objective": m.objective.value,
        "nu": repr(m.nu),
        "eta": repr(m.eta),
        "threshold": repr(m.threshold),
        "threshold_rule": m.threshold_rule,
    }
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("kind", ["one-class", "soft-boundary"])
def test_version_1_model_files_still_load_and_score(kind: str, models, sample_images, tmp_path: Path) -> None:
    saved = models[kind]
    path = tmp_path / "v1.safetensors"
    write_v1_model(path, saved)
    loaded = load_model(path)
    assert loaded.spec == get_spec("mnist") and loaded.resize is Resize.SQUASH and loaded.tool_version == "0.1.0"
    assert (loaded.objective, loaded.threshold, loaded.radius, loaded.preprocessor) == (saved.objective, saved.threshold, saved.radius, saved.preprocessor)
    assert torch.equal(Scorer(loaded, CPU).score(sample_images.incoming), Scorer(saved, CPU).score(sample_images.incoming))
    # version 1 named a registered network; one that does not fit the weights is refused
    rewrite(path, tmp_path / "fashion.safetensors", architecture="fashion-mnist")
    expect_model_error(tmp_path / "fashion.safetensors", "damaged", "encoder.")
    rewrite(path, tmp_path / "resnet.safetensors", architecture="resnet")
    expect_model_error(tmp_path / "resnet.safetensors", "damaged", "architecture")


def test_version_1_autoencoder_files_still_load(tmp_path: Path) -> None:
    spec = get_spec("cifar10", channels=1, image_size=16)
    torch.manual_seed(0)
    ae = AutoEncoder(spec).eval()
    pre = Preprocessor(Preprocessing.GCN, -2.0, 3.0)
    meta = {
        "format": "ssd-autoencoder", "format_version": "1", "tool": "ssd", "tool_version": "0.1.0",
        "architecture": "cifar10", "channels": "1", "image_size": "16", "preprocessing": pre.to_json(), "training": "{}",
    }  # fmt: skip
    save_file({"autoencoder." + k: v.contiguous() for k, v in ae.state_dict().items()}, str(tmp_path / "ae.safetensors"), metadata=meta)
    loaded = load_autoencoder(tmp_path / "ae.safetensors")
    assert (loaded.spec, loaded.preprocessor, loaded.resize) == (spec, pre, Resize.SQUASH)
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.autoencoder().eval()(x), ae(x))


# --- tampered files: refused before anything big is allocated ---------------------------------


class LargestTensor(TorchDispatchMode):
    """The largest tensor (in bytes) any torch operation produces off the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self.bytes = max(self.bytes, t.numel() * t.element_size())
        return out


SMALL = 100_000  # bytes: more than any tensor of the mnist files (25,088), far less than the networks below
# Within every bound (77M weights), but nothing like the mnist weights the files hold.
BIG = LeNetSpec("mnist", channels=1, image_size=28, conv_filters=(1024, 1024), dense_units=(1024,))


def network(spec: LeNetSpec = get_spec("mnist"), layer: tuple[int, dict] | None = None, **changes) -> dict[str, str]:
    """Metadata whose network description (and its version-1 keys) was changed."""
    d = {**spec.to_dict(), **changes}
    if layer:
        d["layers"][layer[0]].update(layer[1])
    return {"network": json.dumps(d), "architecture": str(d["name"]), "channels": str(d["channels"]), "image_size": str(d["image_size"])}


def nan_c(path: Path) -> dict:
    c = load_file(str(path))["c"].clone()
    c[3] = float("nan")
    return {"c": c}


TAMPERED = {
    "inconsistent layers": (lambda p: {"meta": network(layer=(2, {"negative_slope": 0.2}))}, "inconsistent network description"),
    "layer with a bias": (lambda p: {"meta": network(layer=(0, {"bias": True}))}, "inconsistent network description"),
    "huge image size": (lambda p: {"meta": network(image_size=1 << 20, layers=[])}, "image size"),
    "huge filters": (lambda p: {"meta": network(conv_filters=[8, 1 << 20], layers=[])}, "conv filters"),
    "too many weights": (lambda p: {"meta": network(conv_filters=[1024, 1024], dense_units=[65536], layers=[])}, "weights"),
    "big network, small tensors": (lambda p: {"meta": network(BIG)}, "encoder.convs.0.weight"),
    "wrong tensor shape": (lambda p: {"tensors": {"encoder.dense.0.weight": torch.zeros(32, 100)}}, "encoder.dense.0.weight"),
    "wrong dtype": (lambda p: {"tensors": {"encoder.convs.0.weight": torch.zeros(8, 1, 5, 5, dtype=torch.float64)}}, "F64"),
    "wrong c shape": (lambda p: {"tensors": {"c": torch.ones(33)}}, "c is F32 [33]"),
    "missing tensor": (lambda p: {"drop": ("encoder.dense.0.weight",)}, "missing tensors ['encoder.dense.0.weight']"),
    "missing c": (lambda p: {"drop": ("c",)}, "missing tensors ['c']"),
    "extra tensor": (lambda p: {"tensors": {"encoder.extra.weight": torch.zeros(3)}}, "unexpected tensors ['encoder.extra.weight']"),
    "NaN in c": (lambda p: {"tensors": nan_c(p)}, "not finite"),
    "infinite radius": (lambda p: {"tensors": {"radius": torch.tensor([float("inf")])}}, "not finite"),
    "NaN threshold": (lambda p: {"meta": {"threshold": "nan"}}, "threshold is nan"),
    "infinite nu": (lambda p: {"meta": {"nu": "inf"}}, "nu is inf"),
    "NaN eta": (lambda p: {"meta": {"eta": "NaN"}}, "eta is nan"),
    "NaN preprocessing": (lambda p: {"meta": {"preprocessing": '{"kind": "gcn", "low": NaN, "high": 1.0}'}}, "preprocessing low"),
    "huge preprocessing": (lambda p: {"meta": {"preprocessing": '{"kind": "gcn", "low": 0, "high": 1' + "0" * 400 + "}"}}, "damaged"),
    "preprocessing not an object": (lambda p: {"meta": {"preprocessing": "[1]"}}, "damaged"),
    "training not an object": (lambda p: {"meta": {"training": "[1]"}}, "training"),
    "network not JSON": (lambda p: {"meta": {"network": "{"}}, "damaged"),
    "network deeply nested": (lambda p: {"meta": {"network": "[" * 200_000}}, "damaged"),
    "network not an object": (lambda p: {"meta": {"network": "[]"}}, "JSON object"),
    "no network": (lambda p: {"drop_meta": ("network",)}, "network"),
    "unknown resize": (lambda p: {"meta": {"resize": "stretch"}}, "stretch"),
    "no resize": (lambda p: {"drop_meta": ("resize",)}, "resize"),
    "channels disagree": (lambda p: {"meta": {"channels": "3"}}, "channels"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_tampered_model_files_are_refused_without_a_big_allocation(case: str, sample_model, tmp_path: Path) -> None:
    src, dst = tmp_path / "m.safetensors", tmp_path / "tampered.safetensors"
    save_model(src, sample_model)
    make, needle = TAMPERED[case]
    change = make(src)
    rewrite(src, dst, drop=change.get("drop", ()), drop_meta=change.get("drop_meta", ()), tensors=change.get("tensors"), **change.get("meta", {}))
    with LargestTensor() as largest:
        expect_model_error(dst, "damaged", needle)
    assert largest.bytes < SMALL


def test_the_allocation_check_sees_big_tensors(sample_model, tmp_path: Path) -> None:
    """The check above can fail: a valid file loads its tensors, and building the big network would be seen."""
    save_model(tmp_path / "m.safetensors", sample_model)
    with LargestTensor() as largest:
        load_model(tmp_path / "m.safetensors")
    assert largest.bytes == 6272 * 4  # encoder.dense.0.weight, 32 x 196 float32
    with LargestTensor() as largest:
        torch.nn.Linear(BIG.conv_filters[-1] * 49, BIG.rep_dim, bias=False)
    assert largest.bytes > 100 * SMALL


def test_tampered_autoencoder_files_are_refused_without_a_big_allocation(tmp_path: Path) -> None:
    spec = get_spec("mnist")
    src = tmp_path / "ae.safetensors"
    save_autoencoder(src, SavedAutoencoder(spec, Preprocessor(), AutoEncoder(spec).state_dict()))
    cases = {
        "big": ({"meta": network(BIG)}, "autoencoder.encoder.convs.0.weight"),
        "shape": ({"tensors": {"autoencoder.decoder.dense.0.weight": torch.zeros(196, 33)}}, "autoencoder.decoder.dense.0.weight"),
        "missing": ({"drop": ("autoencoder.decoder.convs.1.weight",)}, "missing tensors"),
        "c": ({"tensors": {"c": torch.zeros(32)}}, "unexpected tensors ['c']"),
        "nan": ({"meta": {"preprocessing": '{"kind": "gcn", "low": 0.0, "high": Infinity}'}}, "preprocessing high is inf"),
        "empty range": ({"meta": {"preprocessing": '{"kind": "gcn", "low": 1.0, "high": 1.0}'}}, "empty"),
    }
    for name, (change, needle) in cases.items():
        dst = tmp_path / f"{name}.safetensors"
        rewrite(src, dst, drop=change.get("drop", ()), tensors=change.get("tensors"), **change.get("meta", {}))
        with LargestTensor() as largest:
            expect_model_error(dst, "damaged ssd autoencoder file", needle, loader=load_autoencoder)
        assert largest.bytes < SMALL, name


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
