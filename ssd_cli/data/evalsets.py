"""Labeled test images for `ssd evaluate`: folders, a labels CSV, or a built-in dataset's test split.

Each source gives the same thing, the normal and the anomalous images (paths or uint8 tensors) and a
line saying where they came from, which `Detector.evaluate` takes as they are.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssd_cli.errors import ExitCode, InputError, SsdError, UsageError
from ssd_cli.core.model import SavedModel

LABEL_NAMES = {"normal": False, "0": False, "anomaly": True, "anomalous": True, "1": True}


@dataclass(frozen=True)
class LabeledSets:
    normal: Any  # what Detector.score takes: paths (files or folders) or a uint8 tensor
    anomalous: Any
    source: str
    warnings: tuple[str, ...] = ()  # for the user: what was read differently from how it was written


def from_folders(normal: list[Path], anomalous: list[Path]) -> LabeledSets:
    if not normal or not anomalous:
        raise UsageError("--normal and --anomalous must both be given")
    return LabeledSets(list(normal), list(anomalous), f"folders normal={', '.join(map(str, normal))}; anomalous={', '.join(map(str, anomalous))}")


def from_labels_csv(path: Path) -> LabeledSets:
    """path,label rows (label normal/anomaly, or 0/1), optional header; relative paths are relative
    to the CSV file. UTF-8 with or without a byte-order mark; a file that is not UTF-8 is read as
    Latin-1 (with a warning). A path listed twice with the same label counts once (warning); a path
    with two different labels is refused, since its truth is unknown."""
    if not path.is_file():
        raise InputError(f"--labels: '{path}' does not exist")
    text, warnings = _decoded(path)
    rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r and not r[0].startswith("#")]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    labels: dict[Path, bool] = {}
    repeated, conflicts = 0, []
    for i, row in enumerate(rows, 1):
        if len(row) < 2 or row[1].strip().lower() not in LABEL_NAMES:
            raise InputError(f"--labels {path}: row {i} is not 'path,label' with label normal/0 or anomaly/1: {row}")
        file = Path(row[0]) if Path(row[0]).is_absolute() else (path.parent / row[0]).resolve()
        label = LABEL_NAMES[row[1].strip().lower()]
        if file in labels:
            if labels[file] != label:
                conflicts.append(row[0])
            repeated += 1
            continue
        labels[file] = label
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
        raise InputError(f"--labels {path}: {len(conflicts)} path(s) are labeled both normal and anomaly: {shown}")
    if repeated:
        warnings.append(f"--labels {path}: {repeated} repeated row(s) counted once")
    if not labels:
        raise InputError(f"--labels {path}: no rows")
    missing = [f for f in labels if not f.is_file()]
    if missing:
        warnings.append(f"--labels {path}: {len(missing)} listed file(s) do not exist and are left out: {', '.join(str(f) for f in missing[:5])}{' ...' if len(missing) > 5 else ''}")
    normal = [f for f, a in labels.items() if not a and f.is_file()]
    anomalous = [f for f, a in labels.items() if a and f.is_file()]
    return LabeledSets(normal, anomalous, f"labels file {path}", tuple(warnings))


def _decoded(path: Path) -> tuple[str, list[str]]:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        return data.decode("latin-1"), [f"--labels {path} is not UTF-8; it was read as Latin-1"]


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
