"""Shared fixtures: where the real datasets are (see /work/shared/datasets/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
