"""Decoded training images on disk, so that a training set need not fit in memory.

`ssd train --cache DIR` decodes the images once, at the network's input size, into one file of
uint8 rows under DIR; training then reads the rows of each mini-batch from it (os.pread, so the
pages stay in the system's file cache and not in the process), and memory no longer grows with the
number of images. A cache is keyed by the files (resolved path, size, modification time), their
order and the input settings: a later run on the same files reuses it, and any change makes a new
one. It is built in a temporary folder and renamed into place when complete, under a lock, so two
processes never build the same cache at once and a stopped build leaves nothing that looks done.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssd_cli import __version__
from ssd_cli.core.config import Resize
from ssd_cli.data.images import Skipped, iter_image_batches
from ssd_cli.errors import UsageError

CACHE_FORMAT = 1
DATA_FILE, META_FILE = "images.u8", "meta.json"


def cache_key(files: Sequence[Path], size: int, channels: int, resize: Resize) -> str:
    """Changes whenever a file, the order of the files or an input setting changes."""
    h = hashlib.sha256(f"ssd-cache {CACHE_FORMAT} {size} {channels} {Resize(resize).value}\n".encode())
    for f in files:
        st = os.stat(f)
        h.update(os.fsencode(f.resolve()) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class DiskImages:
    """The readable images of a file list, as uint8 rows of one file."""

    folder: Path
    n: int
    shape: tuple[int, int, int]  # C, H, W
    kept: list[int]  # for each row, its position in the file list
    skipped: list[Skipped]

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape))

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """The images at these row indices, in this order; consecutive rows are read at once."""
        order = idx.tolist()
        out = np.empty((len(order), *self.shape), dtype=np.uint8)
        flat = out.reshape(len(order), -1)
        with open(self.folder / DATA_FILE, "rb", buffering=0) as f:
            fd = f.fileno()
            i = 0
            while i < len(order):
                j = i + 1
                while j < len(order) and order[j] == order[j - 1] + 1:
                    j += 1
                data = os.pread(fd, self.row_bytes * (j - i), order[i] * self.row_bytes)
                flat[i:j] = np.frombuffer(data, dtype=np.uint8).reshape(j - i, -1)
                i = j
        return torch.from_numpy(out)


def open_or_build(files: Sequence[Path], size: int, channels: int, resize: Resize, root: Path, workers: int | None = None) -> DiskImages:
    """The cache of these files under root, built first if there is none."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--cache: cannot use '{root}': {exc.strerror or exc}") from None
    key = cache_key(files, size, channels, resize)
    folder = root / key
    with _locked(root / f".{key}.lock"):
        if not (folder / META_FILE).exists():
            _build(files, size, channels, resize, root, folder, workers)
    return _open(folder)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Wait for any other process building the same cache (flock: released if it dies)."""
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _build(files: Sequence[Path], size: int, channels: int, resize: Resize, root: Path, folder: Path, workers: int | None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        position = {p: i for i, p in enumerate(files)}
        kept: list[int] = []
        skipped: list[Skipped] = []
        with open(tmp / DATA_FILE, "wb") as f:
            for batch in iter_image_batches(files, size, channels, batch_size=1024, workers=workers, resize=resize):
                f.write(batch.images.numpy().tobytes())
                kept += [position[p] for p in batch.paths]
                skipped += batch.skipped
            f.flush()
            os.fsync(f.fileno())
        meta = {
            "format": "ssd-image-cache",
            "format_version": CACHE_FORMAT,
            "tool_version": __version__,
            "shape": [channels, size, size],
            "resize": Resize(resize).value,
            "n": len(kept),
            "kept": kept,
            "skipped": [[str(s.path), s.reason] for s in skipped],
        }
        (tmp / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _open(folder: Path) -> DiskImages:
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    shape = tuple(meta["shape"])
    images = DiskImages(folder, meta["n"], shape, meta["kept"], [Skipped(Path(p), r) for p, r in meta["skipped"]])
    if (folder / DATA_FILE).stat().st_size != images.n * images.row_bytes:
        raise UsageError(f"--cache: '{folder}' is damaged (its data file has the wrong size); delete it and run again")
    return images
