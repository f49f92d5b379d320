"""The benchmark's autoencoder store: each pretrained autoencoder saved in OUT/autoencoders/ as
`ssd pretrain` writes them, until every run of the plan is done, so a benchmark stopped after hours
of pretraining takes them up again instead of pretraining once more."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ssd_cli.core.model import SavedAutoencoder
from ssd_cli.core.nets import AutoEncoder, LeNetSpec
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.errors import ModelFileError
from ssd_cli.experiments.data import BenchmarkData
from ssd_cli.experiments.protocol import TrainingSet
from ssd_cli.experiments.results import completed_keys
from ssd_cli.experiments.runs import Run
from ssd_cli.experiments.settings import BenchmarkSettings
from ssd_cli.io.modelfile import load_autoencoder, save_autoencoder

AUTOENCODER_DIR = "autoencoders"  # pretrained autoencoders of an unfinished plan, for resume


def autoencoder_key(data: BenchmarkData, settings: BenchmarkSettings, run: Run, ts: TrainingSet) -> str:
    """Names one pretraining: everything it depends on, hashed, so a saved autoencoder is only ever
    reused for the same network, decoder, schedule, preprocessing, class, seed and unlabeled samples.
    The autoencoder sees the unlabeled part only, so every method and level with the same unlabeled
    samples and seed shares one (all levels of scenario (i), say)."""
    about = {
        "dataset": data.name,
        "network": data.spec.to_dict(),
        "pretrain": asdict(settings.pretrain),
        "preprocessing": settings.preprocessing.value,
        "normal_class": run.normal_class,
        "seed": run.seed,
    }
    digest = hashlib.sha256(json.dumps(about, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(ts.unlabeled_idx, dtype=np.int64).tobytes())
    return f"class{run.normal_class}-seed{run.seed}-{digest.hexdigest()[:20]}"


def autoencoder_path(out_dir: Path, key: str) -> Path:
    return out_dir / AUTOENCODER_DIR / f"{key}.safetensors"


@dataclass(frozen=True)
class AutoencoderStore:
    """The autoencoders of one results folder, all with the preprocessing `pre` (a normal class's)."""

    out_dir: Path
    pre: Preprocessor

    def load(self, key: str, spec: LeNetSpec, device: torch.device) -> AutoEncoder | None:
        path = autoencoder_path(self.out_dir, key)
        if not path.is_file():
            return None
        try:
            saved = load_autoencoder(path)
        except ModelFileError:
            return None  # not ours, or damaged: pretrain again and replace it
        return saved.autoencoder().to(device) if saved.spec == spec else None

    def save(self, key: str, spec: LeNetSpec, ae: AutoEncoder, training: dict) -> None:
        """With the training record `ssd pretrain` writes (core/records.py), so `ssd info` describes it alike."""
        path = autoencoder_path(self.out_dir, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {**training, "benchmark_pretraining": key}
        save_autoencoder(path, SavedAutoencoder(spec, self.pre, ae.state_dict(), record), force=True)


def saved_autoencoders(out_dir: Path, data: BenchmarkData, settings: BenchmarkSettings, runs: list[Run]) -> dict[tuple, Path]:
    """The pretrainings these runs need, by setup (Run.pretraining), whose autoencoder a stopped run saved."""
    firsts = {r.pretraining(): r for r in reversed(runs) if r.method.is_deep_svdd}
    paths = {k: autoencoder_path(out_dir, autoencoder_key(data, settings, r, data.training_set(r))) for k, r in firsts.items()}
    return {k: path for k, path in paths.items() if path.is_file()}


def forget_autoencoders(out_dir: Path, data: BenchmarkData, settings: BenchmarkSettings, runs: list[Run]) -> int:
    """Once every run of the plan is in the results, remove the autoencoders it saved (a CIFAR-10
    one is megabytes, and a plan has hundreds); returns how many were removed."""
    done = completed_keys(out_dir, data, settings)
    if any(r.key() not in done for r in runs):
        return 0
    paths = saved_autoencoders(out_dir, data, settings, runs).values()
    for path in paths:
        path.unlink(missing_ok=True)
    folder = out_dir / AUTOENCODER_DIR
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return len(paths)
