"""Shared fixtures and helpers: where the real datasets are (see /work/shared/datasets/README.md),
the sample model, and the helpers several test files use (`from conftest import ssd, ok`), so no
test file imports from another.

Markers (pyproject.toml): `slow` for tests that train through the whole engine or run for seconds
(`pytest -m "not slow"` is the quick loop), `distributed` for those that start torchrun processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ssd_cli.cli import app
from ssd_cli.errors import ExitCode

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared read-only data root: $SSD_DATA_ROOT, else ../shared/datasets next to the repository."""
    root = Path(os.environ.get("SSD_DATA_ROOT") or DEFAULT_DATA_ROOT)
    if not root.is_dir():
        pytest.skip(f"dataset root {root} not found (set SSD_DATA_ROOT to the shared datasets folder)")
    return root


# --- Shared fixtures for the engine, model-file and CLI tests -------------------------------------

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.fixture(scope="session", autouse=True)
def torch_threads():
    """One intra-op thread unless $SSD_TEST_THREADS says otherwise.

    The test networks and batches are tiny: with 2+ OpenMP threads on a busy 2-core machine every
    op pays for thread spinning (measured 0.47 s vs 0.002 s for one MNIST autoencoder forward pass).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("SSD_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The repository's sample_data/ (MNIST zeros as normal, other digits as anomalies)."""
    if not (SAMPLE_DIR / "normal").is_dir():
        pytest.skip(f"{SAMPLE_DIR} not found")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def sample_images(sample_dir: Path):
    """uint8 tensors of normal/, anomalies/ and incoming/, plus the truth for incoming/ (True = anomaly)."""
    import csv
    from types import SimpleNamespace

    from ssd_cli.data.images import load_folder

    normal = load_folder([sample_dir / "normal"], 28, 1, what="normal")
    anomalies = load_folder([sample_dir / "anomalies"], 28, 1, what="anomalies")
    incoming = load_folder([sample_dir / "incoming"], 28, 1, what="incoming")
    with open(sample_dir / "incoming_labels.csv", newline="") as f:
        labels = {row["path"]: row["label"] for row in csv.DictReader(f)}
    truth = [labels[p.relative_to(sample_dir).as_posix()] == "anomaly" for p in incoming.paths]
    return SimpleNamespace(
        normal=normal.images, anomalies=anomalies.images, incoming=incoming.images, incoming_paths=incoming.paths, truth=truth
    )


@pytest.fixture(scope="session")
def sample_model(sample_images):
    """A one-class SS-DSVDD model trained on sample_data (normal unlabeled + labeled anomalies), CPU, seed 0.

    10 pretraining + 10 training epochs with lr 1e-3: a few seconds, and enough to rank the digits.
    """
    import torch

    from ssd_cli.core import pipeline
    from ssd_cli.core.config import OptimConfig, Preprocessing, TrainConfig
    from ssd_cli.core.nets import get_spec
    from ssd_cli.core.preprocess import Preprocessor

    spec = get_spec("mnist")
    pre = Preprocessor.fit(Preprocessing.SCALE, sample_images.normal)
    x, y = pipeline.training_tensors(pre, torch.device("cpu"), sample_images.normal, None, sample_images.anomalies)
    ae, _ = pipeline.pretrain(spec, x[y == pipeline.UNLABELED], OptimConfig(epochs=10, lr=1e-3, weight_decay=0.5e-3), seed=0)
    cfg = TrainConfig(optim=OptimConfig(epochs=10, lr=1e-3))
    return pipeline.train_model(spec, x, y, cfg, pre, seed=0, autoencoder=ae)


# --- Helpers for the command line ----------------------------------------------------------------

# Typer's runner mixes stderr into `output` (and also keeps `stderr` separately); wide columns keep
# the help tables, plans and long paths on one line.
ENV = {"COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"}
runner = CliRunner()


def ssd(*args: object):
    """`ssd ARGS...` through Typer's runner."""
    return runner.invoke(app, [str(a) for a in args], env=ENV)


def ok(result) -> str:
    """A command that succeeded without a traceback; its output."""
    assert result.exit_code == 0, f"exit {result.exit_code}:\n{result.output}"
    assert "Traceback" not in result.output
    return result.output


def one_line_error(result, code: ExitCode, *needles: str) -> str:
    """The documented exit code, exactly one 'error:' line, no traceback."""
    assert result.exit_code == code, f"expected exit {int(code)}, got {result.exit_code}:\n{result.output}"
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# --- Helpers that make data ----------------------------------------------------------------------


def photos(folder: Path, n: int, size: tuple[int, int], *, colour: bool = True, seed: int = 0, fmt: str = "png") -> Path:
    """Smooth random pictures (colour blobs on a gradient), so that they decode like photos."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        base = rng.uniform(40, 200, 3) + 30 * np.sin(xx[..., None] / (5 + 10 * rng.random()) + rng.uniform(0, 6, 3))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        blob = 60 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2)[..., None] / (2 * (min(w, h) / 5) ** 2))
        arr = np.clip(base + blob * rng.uniform(-1, 1, 3), 0, 255).astype(np.uint8)
        im = Image.fromarray(arr if colour else arr.mean(axis=2).astype(np.uint8))
        im.save(folder / f"{i:03d}.{fmt}")
    return folder


def rewrite(
    src: Path, dst: Path, *, drop: tuple[str, ...] = (), drop_meta: tuple[str, ...] = (), tensors: dict | None = None, **meta: str
) -> None:
    """Copy a model file with changed metadata or tensors, or some left out."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), framework="pt") as f:
        metadata = dict(f.metadata())
    kept = {k: v for k, v in load_file(str(src)).items() if k not in drop}
    kept.update(tensors or {})
    metadata.update(meta)
    save_file(kept, str(dst), metadata={k: v for k, v in metadata.items() if k not in drop_meta})


def folder_dataset(root: Path, data_root: Path) -> Path:
    """Three MNIST digits as train/<class>/ and test/<class>/ PNG folders (a user's own dataset)."""
    from ssd_cli.data.datasets import load_builtin

    for split, train, n in (("train", True, 60), ("test", False, 30)):
        data = load_builtin("mnist", data_root, train=train)
        for digit in (0, 1, 7):
            folder = root / split / f"digit{digit}"
            folder.mkdir(parents=True)
            for i, idx in enumerate(np.flatnonzero(data.labels.numpy() == digit)[:n]):
                Image.fromarray(data.images[idx, 0].numpy()).save(folder / f"{i}.png")
    return root
