"""Labeled image sets: the built-in benchmark datasets (MNIST, Fashion-MNIST, CIFAR-10) and class folders.

Built-in data is read from a data root in torchvision's layout and never written there unless a download
was asked for, so a shared read-only copy can serve every user. CIFAR-10 is also accepted as a folder of
JPEG class folders (`cifar10-jpeg/`), the only form some offline machines have.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from torchvision import datasets as tv

from ssd_cli.errors import InputError
from ssd_cli.data.images import Skipped, list_images, load_images, name_skipped

DATA_ROOT_ENV = "SSD_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("~/.cache/ssd/datasets")

CIFAR10_OFFICIAL_FOLDER = "cifar-10-batches-py"
CIFAR10_JPEG_FOLDER = "cifar10-jpeg"
_CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_DOWNLOAD_HINT = f"use --download, or point --data-root (or {DATA_ROOT_ENV}) at a folder that has them"


def resolve_data_root(option: Path | None) -> Path:
    """The --data-root option, else $SSD_DATA_ROOT, else ~/.cache/ssd/datasets."""
    if option is not None:
        return Path(option).expanduser()
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env).expanduser() if env else DEFAULT_DATA_ROOT.expanduser()


@dataclass
class LabeledImages:
    """Images with class labels; `source` says where they came from, for reports."""

    images: torch.Tensor  # uint8, (N, C, H, W)
    labels: torch.Tensor  # int64, (N,), indices into `classes`
    classes: list[str]
    source: str
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class BuiltinDataset:
    """What the model and the reports need to know about a built-in dataset before loading it."""

    name: str
    architecture: str  # network architecture name made for this dataset
    channels: int
    image_size: int
    num_classes: int
    paper_name: str  # dataset name in the paper's results CSV
    classes: tuple[str, ...]


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in (
        BuiltinDataset("mnist", "mnist", 1, 28, 10, "mnist", tuple(str(i) for i in range(10))),
        BuiltinDataset(
            "fashion-mnist",
            "fashion-mnist",
            1,
            28,
            10,
            "fashion-mnist",
            ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ),
        BuiltinDataset(
            "cifar10",
            "cifar10",
            3,
            32,
            10,
            "cifar-10",
            ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        ),
    )
}

_IDX_DATASETS: dict[str, tuple[type[tv.MNIST], str]] = {
    "mnist": (tv.MNIST, "MNIST"),
    "fashion-mnist": (tv.FashionMNIST, "Fashion-MNIST"),
}


def get_builtin(name: str) -> BuiltinDataset:
    """Look a dataset up by its CLI name; a typo gets the list of valid names."""
    try:
        return BUILTIN_DATASETS[name]
    except KeyError:
        raise InputError(f"unknown dataset '{name}'; built-in datasets: {', '.join(BUILTIN_DATASETS)}") from None


def load_builtin(name: str, root: Path, train: bool, download: bool = False) -> LabeledImages:
    """Load the train or test split of a built-in dataset from root (downloading there only if asked).

    Results are cached per process because benchmarks load the same split many times; treat the
    returned tensors as read-only.
    """
    spec = get_builtin(name)
    root = Path(root).expanduser().resolve()
    _download(spec, root, download)
    return _load_cached(spec.name, root, train)


@lru_cache(maxsize=8)
def _load_cached(name: str, root: Path, train: bool) -> LabeledImages:
    spec = get_builtin(name)
    if name in _IDX_DATASETS:
        return _load_idx(spec, root, train)
    source = cifar10_source(root)
    if source == "official":
        return _load_cifar10_official(spec, root, train)
    if source == "jpeg":
        return _load_cifar10_jpeg(spec, root, train)
    raise InputError(
        f"CIFAR-10 not found in {root}: expected {root / CIFAR10_OFFICIAL_FOLDER}/ "
        f"({', '.join(_CIFAR10_FILES)}) or {root / CIFAR10_JPEG_FOLDER}/{{train,test}}/<class>/ image folders; "
        + _DOWNLOAD_HINT
    )


def cifar10_source(root: Path) -> Literal["official", "jpeg", "missing"]:
    """Which CIFAR-10 copy root holds; the official batches win over the JPEG folders."""
    if (root / CIFAR10_OFFICIAL_FOLDER).is_dir():
        return "official"
    if (root / CIFAR10_JPEG_FOLDER).is_dir():
        return "jpeg"
    return "missing"


def _download(spec: BuiltinDataset, root: Path, download: bool) -> None:
    """Fetch the official files into root, only when the user asked (--download) and they (or, for
    CIFAR-10, the JPEG copy) are not already there."""
    if not download:
        return
    try:
        if spec.name in _IDX_DATASETS:
            cls = _IDX_DATASETS[spec.name][0]
            if _idx_missing(cls, root):
                cls(root, train=True, download=download)
        elif cifar10_source(root) == "missing":
            tv.CIFAR10(root, train=True, download=download)
    except (RuntimeError, OSError) as exc:
        reason = " ".join(str(exc).split())  # torchvision's message spans lines; errors are shown on one
        raise InputError(f"could not download {spec.name} into {root}: {reason}") from None


def _load_idx(spec: BuiltinDataset, root: Path, train: bool) -> LabeledImages:
    cls, title = _IDX_DATASETS[spec.name]
    try:
        ds = cls(root, train=train, download=False)
    except RuntimeError as exc:
        if "Dataset not found" not in str(exc):
            raise
        missing = ", ".join(str(p) for p in _idx_missing(cls, root))
        raise InputError(f"{title} not found: missing {missing}; {_DOWNLOAD_HINT}") from None
    return LabeledImages(
        images=ds.data.unsqueeze(1).contiguous(),
        labels=ds.targets.to(torch.int64),
        classes=list(spec.classes),
        source=f"{title} (official idx files)",
    )


def _idx_missing(cls: type[tv.MNIST], root: Path) -> list[Path]:
    """The idx files torchvision needs (all four, whichever split is loaded) that are not there."""
    raw = root / cls.__name__ / "raw"
    return [raw / f for f in _IDX_FILES if not (raw / f).is_file()]


def _load_cifar10_official(spec: BuiltinDataset, root: Path, train: bool) -> LabeledImages:
    try:
        ds = tv.CIFAR10(root, train=train, download=False)
    except RuntimeError as exc:
        if "not found" not in str(exc):
            raise
        folder = root / CIFAR10_OFFICIAL_FOLDER
        raise InputError(
            f"CIFAR-10 in {folder} is incomplete or corrupted (expected {', '.join(_CIFAR10_FILES)}); "
            f"remove it or {_DOWNLOAD_HINT}"
        ) from None
    return LabeledImages(
        images=torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
        labels=torch.tensor(ds.targets, dtype=torch.int64),
        classes=list(spec.classes),
        source="CIFAR-10 (official python batches)",
    )


def _load_cifar10_jpeg(spec: BuiltinDataset, root: Path, train: bool) -> LabeledImages:
    folder = root / CIFAR10_JPEG_FOLDER
    loaded = load_class_folders(folder, "train" if train else "test", spec.image_size, spec.channels)
    unknown = sorted(set(loaded.classes) - set(spec.classes))
    if unknown:
        raise InputError(f"{folder}: unexpected class folders {', '.join(unknown)}; expected {', '.join(spec.classes)}")
    official_index = torch.tensor([spec.classes.index(c) for c in loaded.classes], dtype=torch.int64)
    return LabeledImages(
        images=loaded.images,
        labels=official_index[loaded.labels],
        classes=list(spec.classes),
        source=(
            f"CIFAR-10 JPEG copy ({CIFAR10_JPEG_FOLDER}/, not the official bytes; "
            "AUCs close to, not identical with, the official data)"
        ),
        skipped=loaded.skipped,
    )


def class_names(path: Path) -> list[str]:
    """The classes of a class-folder dataset: the sorted subfolders of path/train."""
    return _class_folders(Path(path), "train")


def _class_folders(path: Path, split: str) -> list[str]:
    folder = path / split
    if not folder.is_dir():
        raise InputError(f"'{folder}' does not exist (expected {path}/{split}/<class>/ image folders)")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise InputError(f"'{folder}' has no class folders (expected {folder}/<class>/ image folders)")
    return names


def load_class_folders(path: Path, split: str, size: int, channels: int) -> LabeledImages:
    """Load path/<split>/<class>/** with labels indexing the train split's classes.

    Every split is labeled against the train classes so that train and test labels agree; a test class
    missing from train is an error because a model could never have been trained or checked against it.
    """
    path = Path(path)
    classes = class_names(path)
    present = _class_folders(path, split)
    extra = [c for c in present if c not in classes]
    if extra:
        raise InputError(f"'{path / split}' has classes not in '{path / 'train'}': {', '.join(extra)}")
    label_of: dict[Path, int] = {}
    skipped: list[Skipped] = []
    for name in present:
        listing = list_images([path / split / name], what=f"class '{name}'")
        label_of.update((f, classes.index(name)) for f in listing.files)
        skipped.extend(listing.skipped)
    batch = load_images(list(label_of), size, channels)
    if not batch.paths:
        raise InputError(f"'{path / split}': none of the {len(label_of)} image files could be read: {name_skipped(batch.skipped)}")
    return LabeledImages(
        images=batch.images,
        labels=torch.tensor([label_of[p] for p in batch.paths], dtype=torch.int64),
        classes=classes,
        source=f"class folders {path / split}",
        skipped=skipped + batch.skipped,
    )
