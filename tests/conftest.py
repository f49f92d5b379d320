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
