"""Labeled test images for `ssd evaluate`: folders, a labels CSV, or a built-in dataset's test split.

Each source gives the same thing, the normal and the anomalous images (paths or uint8 tensors) and a
line saying where they came from, which `Detector.evaluate` takes as they are.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssd_cli.errors import ExitCode, InputError, SsdError, UsageError
from ssd_cli.io.modelfile import SavedModel

LABEL_NAMES = {"normal": False, "0": False, "anomaly": True, "anomalous": True, "1": True}


@dataclass(frozen=True)
class LabeledSets:
    normal: Any  # what Detector.score takes: paths (files or folders) or a uint8 tensor
    anomalous: Any
    source: str


def from_folders(normal: list[Path], anomalous: list[Path]) -> LabeledSets:
    if not normal or not anomalous:
        raise UsageError("--normal and --anomalous must both be given")
    return LabeledSets(list(normal), list(anomalous), f"folders normal={', '.join(map(str, normal))}; anomalous={', '.join(map(str, anomalous))}")


def from_labels_csv(path: Path) -> LabeledSets:
    """path,label rows (label normal/anomaly, or 0/1), optional header; relative paths are relative
    to the CSV file."""
    if not path.is_file():
        raise InputError(f"--labels: '{path}' does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    if rows and rows[0][:2] == ["path", "label"]:
        rows = rows[1:]
    normal, anomalous = [], []
    for i, row in enumerate(rows, 1):
        if len(row) < 2 or row[1].strip().lower() not in LABEL_NAMES:
            raise InputError(f"--labels {path}: row {i} is not 'path,label' with label normal or anomaly: {row}")
        file = Path(row[0]) if Path(row[0]).is_absolute() else (path.parent / row[0]).resolve()
        (anomalous if LABEL_NAMES[row[1].strip().lower()] else normal).append(file)
    if not normal and not anomalous:
        raise InputError(f"--labels {path}: no rows")
    return LabeledSets(normal, anomalous, f"labels file {path}")


def from_dataset(name: str, normal_class: int | None, saved: SavedModel, data_root: Path | None, download: bool) -> LabeledSets:
    """A built-in dataset's test split: normal_class is normal, every other class anomalous."""
    from ssd_cli.data.datasets import get_builtin, load_builtin, resolve_data_root

    b = get_builtin(name)
    if normal_class is None or not 0 <= normal_class < b.num_classes:
        raise UsageError(f"--dataset needs --normal-class between 0 and {b.num_classes - 1}")
    spec = saved.spec
    if (b.channels, b.image_size) != (spec.channels, saved.input_size):
        raise SsdError(
            f"model expects {spec.channels}x{saved.input_size}x{saved.input_size} images; {name} has {b.channels}x{b.image_size}x{b.image_size}",
            ExitCode.BAD_MODEL,
        )
    test = load_builtin(name, resolve_data_root(data_root), train=False, download=download)
    is_normal = test.labels == normal_class
    return LabeledSets(test.images[is_normal], test.images[~is_normal], f"{name} test split, normal class {normal_class} ({test.source})")
