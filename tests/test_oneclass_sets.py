"""benchmarks/make_oneclass_sets.py: the one-class CIFAR-10 folders the photo-quality study trains on
hold what its docstring says (the class's train images, the next class as labeled anomalies, the
whole test split), as links to the dataset's own files, the same for the same seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "make_oneclass_sets.py"


def make(out: Path, data_root: Path, seed: int = 0) -> None:
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--data-root", str(data_root), "--classes", "8,9", "--train", "7", "--labeled", "3", "--seed", str(seed)]
    proc = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def listing(folder: Path) -> list[str]:
    return sorted(os.readlink(p) for p in folder.iterdir())


def test_cifar10_sets_link_the_class_the_next_class_and_the_whole_test_split(data_root: Path, tmp_path: Path) -> None:
    cifar = data_root / "cifar10-jpeg"
    make(tmp_path / "a", data_root)
    ship, truck = tmp_path / "a" / "8-ship", tmp_path / "a" / "9-truck"
    train = listing(ship / "train" / "normal")
    assert len(train) == 7 and all(Path(p).parent == (cifar / "train" / "ship").resolve() for p in train)
    assert {Path(p).parent.name for p in listing(truck / "train" / "bad")} == {"airplane"}  # (9 + 1) mod 10
    assert len(listing(ship / "train" / "bad")) == 3
    test_ships = sorted(str(p.resolve()) for p in (cifar / "test" / "ship").glob("*.jpg"))
    assert listing(ship / "test" / "normal") == test_ships
    others = listing(ship / "test" / "anomalous")
    assert len(others) == sum(len(list((cifar / "test" / c).glob("*.jpg"))) for c in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "truck"))
    assert not {Path(p).parent.name for p in others} & {"ship"}
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["sets"][0]["labeled_anomaly_class"] == "truck"
    make(tmp_path / "b", data_root)
    make(tmp_path / "c", data_root, seed=1)
    assert listing(tmp_path / "b" / "8-ship" / "train" / "normal") == train
    assert listing(tmp_path / "c" / "8-ship" / "train" / "normal") != train
