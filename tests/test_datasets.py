"""Built-in datasets and class folders: counts, labels, error messages, and never writing into the data root."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from ssd_cli.data.datasets import (
    BUILTIN_DATASETS,
    DATA_ROOT_ENV,
    cifar10_source,
    class_names,
    get_builtin,
    load_builtin,
    load_class_folders,
    resolve_data_root,
)
from ssd_cli.errors import InputError

MNIST_TRAIN_PER_CLASS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def snapshot(root: Path) -> set[tuple[str, int, int]]:
    """Every file and folder below root with its size and modification time."""
    entries = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.stat(os.path.join(dirpath, name))
            entries.add((os.path.relpath(os.path.join(dirpath, name), root), st.st_size, st.st_mtime_ns))
    return entries


def write_image(path: Path, value: int | tuple[int, int, int], size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if isinstance(value, int) else "RGB"
    Image.new(mode, (size, size), value).save(path)


# --- data root ---------------------------------------------------------------------------------------


def test_data_root_option_beats_env_beats_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "opt") == tmp_path / "opt"
    assert resolve_data_root(None) == tmp_path / "env"
    monkeypatch.delenv(DATA_ROOT_ENV)
    assert resolve_data_root(None) == tmp_path / ".cache" / "ssd" / "datasets"
    monkeypatch.setenv(DATA_ROOT_ENV, "")
    assert resolve_data_root(None) == tmp_path / ".cache" / "ssd" / "datasets"


# --- registry ----------------------------------------------------------------------------------------


def test_registry_describes_the_three_paper_datasets() -> None:
    shapes = {
        n: (d.architecture, d.channels, d.image_size, d.num_classes, d.paper_name) for n, d in BUILTIN_DATASETS.items()
    }
    assert shapes == {
        "mnist": ("mnist", 1, 28, 10, "mnist"),
        "fashion-mnist": ("fashion-mnist", 1, 28, 10, "fashion-mnist"),
        "cifar10": ("cifar10", 3, 32, 10, "cifar-10"),
    }
    assert all(len(d.classes) == d.num_classes for d in BUILTIN_DATASETS.values())
    assert list(get_builtin("cifar10").classes) == CIFAR10_CLASSES


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(InputError, match="mnist, fashion-mnist, cifar10"):
        get_builtin("svhn")


# --- MNIST and Fashion-MNIST from the shared root ----------------------------------------------------


def test_mnist_splits(data_root: Path) -> None:
    train = load_builtin("mnist", data_root, train=True)
    test = load_builtin("mnist", data_root, train=False)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.shape == (60000,) and train.labels.dtype == torch.int64
    assert torch.bincount(train.labels).tolist() == MNIST_TRAIN_PER_CLASS
    assert test.images.shape == (10000, 1, 28, 28) and len(test.labels) == 10000
    assert train.classes == [str(i) for i in range(10)]
    assert "official" in train.source and train.skipped == []


def test_fashion_mnist_splits(data_root: Path) -> None:
    train = load_builtin("fashion-mnist", data_root, train=True)
    test = load_builtin("fashion-mnist", data_root, train=False)
    assert train.images.shape == (60000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def test_splits_are_cached_in_process(data_root: Path) -> None:
    assert load_builtin("mnist", data_root, train=False) is load_builtin("mnist", data_root, train=False)


def test_loading_never_writes_into_a_read_only_root(data_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "ro"
    for folder in ("MNIST", "FashionMNIST"):
        shutil.copytree(data_root / folder / "raw", root / folder / "raw")
    paths = [root, *root.rglob("*")]
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)
    before = snapshot(root)
    try:
        for name in ("mnist", "fashion-mnist"):
            for train in (True, False):
                load_builtin(name, root, train=train)
        assert snapshot(root) == before
    finally:
        for p in paths:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert not (data_root / "MNIST" / "processed").exists()


def test_missing_mnist_names_the_expected_files(tmp_path: Path) -> None:
    root = tmp_path / "nothing-here"
    with pytest.raises(InputError) as err:
        load_builtin("mnist", root, train=True)
    message = str(err.value)
    assert str(root / "MNIST" / "raw" / "train-images-idx3-ubyte") in message
    assert "--download" in message and DATA_ROOT_ENV in message
    assert not root.exists()


def test_partly_missing_fashion_mnist_names_only_the_missing_files(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_FILES[:2]:
        (raw / name).touch()
    with pytest.raises(InputError) as err:
        load_builtin("fashion-mnist", tmp_path, train=True)
    assert str(raw / "t10k-images-idx3-ubyte") in str(err.value)
    assert str(raw / "train-images-idx3-ubyte") not in str(err.value)


# --- CIFAR-10 ----------------------------------------------------------------------------------------


def test_cifar10_source_prefers_official_batches(tmp_path: Path) -> None:
    assert cifar10_source(tmp_path) == "missing"
    (tmp_path / "cifar10-jpeg").mkdir()
    assert cifar10_source(tmp_path) == "jpeg"
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert cifar10_source(tmp_path) == "official"


def test_shared_root_has_the_cifar10_jpeg_copy(data_root: Path) -> None:
    expected = "official" if (data_root / "cifar-10-batches-py").is_dir() else "jpeg"
    assert cifar10_source(data_root) == expected


def test_missing_cifar10_names_both_layouts(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_builtin("cifar10", tmp_path, train=False)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and str(tmp_path / "cifar10-jpeg") in message
    assert "data_batch_1" in message and "--download" in message


def test_cifar10_jpeg_copy_uses_official_label_order(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for i, name in enumerate(CIFAR10_CLASSES):
            write_image(tmp_path / "cifar10-jpeg" / split / name / "0000.jpg", (20 * i, 0, 255 - 20 * i), size=32)
    data = load_builtin("cifar10", tmp_path, train=True)
    assert data.images.shape == (10, 3, 32, 32) and data.classes == CIFAR10_CLASSES
    red = data.images[:, 0].float().mean(dim=(1, 2))
    assert torch.allclose(red, 20 * data.labels.float(), atol=3)
    assert "JPEG" in data.source and "not the official" in data.source


def test_cifar10_jpeg_copy_rejects_unknown_classes(tmp_path: Path) -> None:
    write_image(tmp_path / "cifar10-jpeg" / "train" / "zebra" / "0000.jpg", (1, 2, 3), size=32)
    with pytest.raises(InputError, match="zebra"):
        load_builtin("cifar10", tmp_path, train=True)


# --- class folders -----------------------------------------------------------------------------------


@pytest.fixture
def class_tree(tmp_path: Path) -> Path:
    """train/ with classes a, b, c (PNG and JPEG, one nested, one corrupt, one text file); test/ with a and c."""
    root = tmp_path / "data"
    for k, name in enumerate("abc"):
        for j in range(3):
            write_image(root / "train" / name / f"{j}.png", 50 * k + 30)
        write_image(root / "train" / name / "more" / "x.jpg", 50 * k + 30)
    (root / "train" / "b" / "broken.png").write_bytes(b"not a png")
    (root / "train" / "c" / "notes.txt").write_text("hello")
    write_image(root / "test" / "a" / "0.png", 30)
    write_image(root / "test" / "c" / "0.png", 130)
    return root


def test_class_folders_load_with_sorted_class_labels(class_tree: Path) -> None:
    data = load_class_folders(class_tree, "train", size=16, channels=1)
    assert class_names(class_tree) == data.classes == ["a", "b", "c"]
    assert data.images.shape == (12, 1, 16, 16) and data.images.dtype == torch.uint8
    assert torch.bincount(data.labels).tolist() == [4, 4, 4]
    means = data.images.float().mean(dim=(1, 2, 3))
    assert torch.allclose(means, 50 * data.labels.float() + 30, atol=2)
    assert sorted(s.path.name for s in data.skipped) == ["broken.png", "notes.txt"]


def test_test_split_is_labeled_against_train_classes(class_tree: Path) -> None:
    data = load_class_folders(class_tree, "test", size=8, channels=3)
    assert data.classes == ["a", "b", "c"] and data.images.shape == (2, 3, 8, 8)
    assert sorted(data.labels.tolist()) == [0, 2]


def test_test_class_missing_from_train_is_an_error(class_tree: Path) -> None:
    write_image(class_tree / "test" / "d" / "0.png", 0)
    with pytest.raises(InputError, match="classes not in .*: d"):
        load_class_folders(class_tree, "test", size=8, channels=1)


def test_missing_or_empty_split_is_an_error(class_tree: Path) -> None:
    with pytest.raises(InputError, match=re.escape(str(class_tree / "val"))):
        load_class_folders(class_tree, "val", size=8, channels=1)
    (class_tree / "val").mkdir()
    with pytest.raises(InputError, match="no class folders"):
        load_class_folders(class_tree, "val", size=8, channels=1)


def test_class_folder_without_images_is_an_error(class_tree: Path) -> None:
    (class_tree / "test" / "b").mkdir()
    with pytest.raises(InputError, match="class 'b'"):
        load_class_folders(class_tree, "test", size=8, channels=1)


def test_fully_unreadable_split_is_an_error(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "a" / "0.png", 0)
    (tmp_path / "test" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a" / "bad.png").write_bytes(bytes(10))
    with pytest.raises(InputError, match=r"none of the 1 image files could be read: .*bad.png \(unreadable image"):
        load_class_folders(tmp_path, "test", size=8, channels=1)
