"""Training sets larger than memory: the disk cache of decoded images, and ImageSet, which
preprocesses a mini-batch at a time. Same numbers as training from memory."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ssd_cli.core.config import Preprocessing, Resize
from ssd_cli.core.imageset import ImageSet
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.data.cache import open_or_build
from ssd_cli.data.images import list_images, load_images

from conftest import ok, ssd


def test_imageset_gives_what_preprocessing_everything_gives(sample_images) -> None:
    images = sample_images.normal
    pre = Preprocessor.fit(Preprocessing.GCN, images)
    assert Preprocessor.fit(Preprocessing.GCN, list(images.split(37))) == pre  # chunks fit the same
    full = pre(images)
    x = ImageSet.of(images, pre, torch.device("cpu"))
    idx = torch.tensor([5, 3, 399, 0, 3])
    assert torch.equal(x[idx], full[idx]) and x.shape == (400, 1, 28, 28) and len(x) == 400
    mask = torch.arange(400) % 3 == 0
    sub = x[mask]
    assert len(sub) == int(mask.sum()) and torch.equal(sub[torch.tensor([0, 1])], full[mask][:2])
    assert torch.equal(torch.cat(list(sub.split(50))), full[mask])
    assert torch.equal(torch.cat(list(x[10:20].split(3))), full[10:20])


def test_the_cache_holds_what_decoding_gives_and_is_reused(sample_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    shutil.copytree(sample_dir / "incoming", folder)
    (folder / "broken.png").write_bytes(b"not an image")
    files = list_images([folder]).files
    root = tmp_path / "cache"
    disk = open_or_build(files, 28, 1, Resize.SQUASH, root)
    memory = load_images(files, 28, 1)
    assert disk.n == 100 and [files[i] for i in disk.kept] == memory.paths
    assert [s.path for s in disk.skipped] == [folder / "broken.png"]
    assert torch.equal(disk.rows(torch.arange(100)), memory.images)
    assert torch.equal(disk.rows(torch.tensor([7, 3, 4, 5, 99])), memory.images[[7, 3, 4, 5, 99]])
    built = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    assert len(built) == 1
    again = open_or_build(files, 28, 1, Resize.SQUASH, root)
    assert again.folder == disk.folder  # reused
    os.utime(files[0], ns=(0, 0))  # a file changed: a new cache
    assert open_or_build(files, 28, 1, Resize.SQUASH, root).folder != disk.folder
    assert open_or_build(files, 32, 1, Resize.SQUASH, root).folder != disk.folder  # other input settings


def test_two_builders_at_once_make_one_cache(sample_dir: Path, tmp_path: Path) -> None:
    files = list_images([sample_dir / "normal"]).files
    root = tmp_path / "cache"
    results, errors = [], []

    def build() -> None:
        try:
            results.append(open_or_build(files, 28, 1, Resize.SQUASH, root))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len({r.folder for r in results}) == 1
    assert [p for p in root.iterdir() if not p.name.endswith(".lock")] == [results[0].folder]  # no half-built folder left


@pytest.mark.slow
def test_training_from_the_cache_gives_the_model_training_from_memory(sample_dir: Path, tmp_path: Path) -> None:
    args = ["train", "-u", sample_dir / "normal", "--anomalies", sample_dir / "anomalies", "--epochs", 2, "--pretrain-epochs", 2, "--device", "cpu"]
    ok(ssd(*args, "--out", tmp_path / "memory.safetensors"))
    ok(ssd(*args, "--out", tmp_path / "cached.safetensors", "--cache", tmp_path / "cache"))
    ok(ssd(*args, "--out", tmp_path / "again.safetensors", "--cache", tmp_path / "cache"))
    a, b, c = (load_file(str(tmp_path / f"{n}.safetensors")) for n in ("memory", "cached", "again"))
    assert all(torch.equal(a[k], b[k]) and torch.equal(b[k], c[k]) for k in a)
