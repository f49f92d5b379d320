"""`ssd benchmark`: the paper's experiments (section 3) rerun with this tool's own engine.

A plan is a list of runs (scenario, level, normal class, seed, method, nu). Runs that share a
training set share its data and its autoencoder pretraining; each finished run is appended to
results.jsonl at once, so a stopped benchmark resumes where it left off. Nothing here prints.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import PAPER_PRETRAIN_COLOUR, PAPER_PRETRAIN_GRAYSCALE, PAPER_TRAIN, Objective, OptimConfig, Preprocessing, TrainConfig
from .datasets import LabeledImages
from .errors import InputError
from .metrics import auroc
from .nets import AutoEncoder, Classifier, LeNetSpec
from .pipeline import initial_encoder, pretrain, training_tensors
from .preprocess import Preprocessor
from .protocol import Method, Scenario, draw_training_set, methods_for_level, test_targets
from .training import classifier_scores, distances, seeded_init, train_classifier, train_deep_svdd

RESULTS_FILE = "results.jsonl"
PAPER_NUS = (0.01, 0.1)


class Preset(str, Enum):
    PAPER = "paper"  # Appendix C epochs, 10 classes x 10 seeds
    QUICK = "quick"  # few epochs, 1 seed: minutes on a 2-core CPU for MNIST / Fashion-MNIST


@dataclass(frozen=True)
class BenchmarkSettings:
    train: OptimConfig
    pretrain: OptimConfig
    seeds: int
    preprocessing: Preprocessing = Preprocessing.GCN
    nus: tuple[float, ...] = PAPER_NUS
    label: str = "paper"  # how results.jsonl names these settings; resume matches on it


def preset_settings(preset: Preset, spec: LeNetSpec) -> BenchmarkSettings:
    """The paper preset follows Appendix C, and the original Deep SVDD code where the paper is silent."""
    ae = PAPER_PRETRAIN_COLOUR if spec.channels == 3 else PAPER_PRETRAIN_GRAYSCALE
    if preset is Preset.PAPER:
        return BenchmarkSettings(train=PAPER_TRAIN, pretrain=ae, seeds=10, label=preset.value)
    # quick: the same schedule shape (a 10x lr drop two thirds in), a tenth of the epochs or less
    return BenchmarkSettings(
        train=replace(PAPER_TRAIN, epochs=6, lr_milestones=(4,)),
        pretrain=replace(ae, epochs=6, lr_milestones=(4,)),
        seeds=1,
        label=preset.value,
    )


def with_epochs(s: BenchmarkSettings, train_epochs: int | None, pretrain_epochs: int | None) -> BenchmarkSettings:
    """Override epochs; the milestone keeps its relative place, and the label records the change."""
    def scaled(o: OptimConfig, epochs: int | None) -> OptimConfig:
        if epochs is None or epochs == o.epochs:
            return o
        ms = tuple(max(1, round(m * epochs / o.epochs)) for m in o.lr_milestones if o.epochs)
        return replace(o, epochs=epochs, lr_milestones=ms)

    train, pre = scaled(s.train, train_epochs), scaled(s.pretrain, pretrain_epochs)
    label = s.label
    if (train, pre) != (s.train, s.pretrain):
        label = f"{s.label}(epochs={train.epochs},pretrain={pre.epochs})"
    return replace(s, train=train, pretrain=pre, label=label)


@dataclass(frozen=True)
class Run:
    scenario: Scenario
    level: float
    normal_class: int
    seed: int
    method: Method
    nu: float | None  # soft-boundary methods only

    def key(self) -> tuple:
        return (self.scenario.value, float(self.level), self.normal_class, self.seed, self.method.value, self.nu)


@dataclass
class BenchmarkData:
    name: str  # "mnist", or the folder's name
    source: str  # human description, e.g. that CIFAR-10 is the JPEG copy
    spec: LeNetSpec
    train: LabeledImages
    test: LabeledImages

    @property
    def n_classes(self) -> int:
        return len(self.train.classes)


def plan_runs(
    scenarios: list[Scenario],
    classes: list[int],
    seeds: int,
    methods: list[Method],
    nus: tuple[float, ...],
    levels: list[float] | None = None,
) -> list[Run]:
    """Every run, grouped so that runs sharing a training set (and its pretraining) are adjacent."""
    runs = []
    for scenario in scenarios:
        for level in levels if levels is not None else scenario.levels:
            wanted = [m for m in methods_for_level(scenario, level) if m in methods]
            for normal_class in classes:
                for seed in range(seeds):
                    for m in wanted:
                        for nu in nus if m.is_soft_boundary else (None,):
                            runs.append(Run(scenario, level, normal_class, seed, m, nu))
    return runs


def completed_keys(out_dir: Path, dataset: str, settings: BenchmarkSettings) -> set[tuple]:
    """Keys of the runs results.jsonl already holds for this dataset and settings (resume)."""
    path = out_dir / RESULTS_FILE
    done: set[tuple] = set()
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
            if r["dataset"] == dataset and r["preset"] == settings.label and r["preprocessing"] == settings.preprocessing.value:
                done.add((r["scenario"], float(r["level"]), r["normal_class"], r["seed"], r["method"], r["nu"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a stop; that run is simply redone
    return done


def append_record(path: Path, record: dict) -> None:
    """One line per finished run, flushed to disk before the next run starts.

    A line cut short by an earlier stop is closed first, so it cannot swallow this record.
    """
    cut = path.exists() and path.stat().st_size > 0 and path.read_bytes()[-1:] != b"\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(("\n" if cut else "") + json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


@dataclass
class _SetCache:
    """Per (class) preprocessing and test tensors, and per training set autoencoders."""

    pre: dict[int, Preprocessor] = field(default_factory=dict)
    test: dict[int, torch.Tensor] = field(default_factory=dict)
    ae: dict[tuple, AutoEncoder] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    run: Run
    record: dict


def run_benchmark(
    data: BenchmarkData,
    runs: list[Run],
    settings: BenchmarkSettings,
    out_dir: Path,
    device: torch.device,
    on_start: Callable[[Run], None] | None = None,
) -> Iterator[RunResult]:
    """Execute the runs in order, appending each finished one to results.jsonl and yielding it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / RESULTS_FILE
    cache = _SetCache()
    train_labels = data.train.labels.numpy()
    for run in runs:
        if on_start is not None:
            on_start(run)
        start = time.perf_counter()
        ts = draw_training_set(train_labels, run.normal_class, run.scenario, run.level, run.seed, data.n_classes)
        pre = _preprocessor(cache, data, run.normal_class, settings.preprocessing)
        x_test = _test_tensor(cache, data, run.normal_class, pre, device)
        is_anomaly = test_targets(data.test.labels.numpy(), run.normal_class)
        unlabeled = data.train.images[torch.tensor(ts.unlabeled_idx)]
        labeled = data.train.images[torch.tensor(ts.labeled_idx)] if run.method.uses_labels else None
        x, y = training_tensors(pre, device, unlabeled, None, labeled)
        scores = _train_and_score(data.spec, run, x, y, x_test, settings, cache, ts.unlabeled_idx)
        auc = auroc(scores, is_anomaly)
        record = {
            "dataset": data.name,
            "data_source": data.source,
            "scenario": run.scenario.value,
            "level": run.level,
            "normal_class": run.normal_class,
            "known_classes": list(ts.known_classes) if run.method.uses_labels else [],
            "seed": run.seed,
            "method": run.method.value,
            "nu": run.nu,
            "auc": auc,
            "seconds": round(time.perf_counter() - start, 3),
            "tool_version": __version__,
            "preset": settings.label,
            "preprocessing": settings.preprocessing.value,
            "n_unlabeled": len(ts.unlabeled_idx),
            "n_polluted": len(ts.polluted_idx),
            "n_labeled": len(ts.labeled_idx) if run.method.uses_labels else 0,
            "train_epochs": settings.train.epochs,
            "pretrain_epochs": settings.pretrain.epochs if run.method.is_deep_svdd else 0,
            "device": str(device),
        }
        append_record(results, record)
        yield RunResult(run, record)


def _preprocessor(cache: _SetCache, data: BenchmarkData, normal_class: int, kind: Preprocessing) -> Preprocessor:
    """Statistics from the normal class's training data, as the original Deep SVDD code."""
    if normal_class not in cache.pre:
        cache.pre[normal_class] = Preprocessor.fit(kind, data.train.images[data.train.labels == normal_class])
    return cache.pre[normal_class]


def _test_tensor(cache: _SetCache, data: BenchmarkData, normal_class: int, pre: Preprocessor, device: torch.device) -> torch.Tensor:
    if normal_class not in cache.test:
        cache.test.clear()  # one class at a time: the plan visits classes in order within a level
        cache.test[normal_class] = pre(data.test.images.to(device)).contiguous(memory_format=torch.channels_last)
    return cache.test[normal_class]


def _train_and_score(
    spec: LeNetSpec,
    run: Run,
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    s: BenchmarkSettings,
    cache: _SetCache,
    unlabeled_idx: np.ndarray,
) -> np.ndarray:
    if run.method is Method.SUPERVISED:
        clf = seeded_init(lambda: Classifier(spec), run.seed).to(x.device)
        train_classifier(clf, x, y, s.train, seed=run.seed)
        return classifier_scores(clf, x_test).float().cpu().numpy()
    # One pretraining per training set: the autoencoder sees the unlabeled part only, so every
    # method and level with the same unlabeled samples and seed shares it.
    ae_key = (run.normal_class, run.seed, hash(unlabeled_idx.tobytes()))
    if ae_key not in cache.ae:
        if len(cache.ae) > 16:
            cache.ae.clear()
        cache.ae[ae_key], _ = pretrain(spec, x[y == 0], s.pretrain, seed=run.seed)
    encoder = initial_encoder(spec, cache.ae[ae_key], run.seed, x.device)
    objective = Objective.SOFT_BOUNDARY if run.method.is_soft_boundary else Objective.ONE_CLASS
    cfg = TrainConfig(objective=objective, nu=run.nu if run.nu is not None else 0.1, optim=s.train)
    result = train_deep_svdd(encoder, x, y, cfg, seed=run.seed)
    return distances(encoder, result.c, x_test).float().cpu().numpy()


def estimate_seconds(runs: list[Run], data: BenchmarkData, settings: BenchmarkSettings, device: torch.device) -> float:
    """A rough time for the plan from a few timed training steps of this architecture here."""
    per_image = _seconds_per_image(data.spec, device, settings.train.batch_size)
    n_class = {c: int((data.train.labels == c).sum()) for c in range(data.n_classes)}
    pretrainings = {(r.scenario, r.level if r.scenario is not Scenario.LABELED else 0, r.normal_class, r.seed) for r in runs if r.method.is_deep_svdd}
    total = sum(n_class[r.normal_class] * settings.train.epochs * per_image["encoder"] for r in runs)
    total += sum(n_class[c] * settings.pretrain.epochs * per_image["autoencoder"] for _, _, c, _ in pretrainings)
    return total


def _seconds_per_image(spec: LeNetSpec, device: torch.device, batch_size: int) -> dict[str, float]:
    out = {}
    x = torch.rand(batch_size, spec.channels, spec.image_size, spec.image_size, device=device)
    y = torch.zeros(batch_size, dtype=torch.int8, device=device)
    for name, build in (("encoder", lambda: initial_encoder(spec, None, 0, device)), ("autoencoder", lambda: AutoEncoder(spec).to(device))):
        model = build()
        steps = 4
        if name == "encoder":
            start = time.perf_counter()
            train_deep_svdd(model, x.repeat(steps, 1, 1, 1), y.repeat(steps), TrainConfig(optim=replace(PAPER_TRAIN, epochs=1, batch_size=batch_size)), seed=0)
        else:
            start = time.perf_counter()
            pretrain(spec, x.repeat(steps, 1, 1, 1), replace(PAPER_TRAIN, epochs=1, batch_size=batch_size), seed=0)
        out[name] = (time.perf_counter() - start) / (steps * batch_size)
    return out


def load_benchmark_data(dataset: str, root: Path, download: bool, arch: str | None) -> BenchmarkData:
    """A built-in dataset by name, or a folder with train/<class>/ and test/<class>/ image folders."""
    from .datasets import BUILTIN_DATASETS, load_builtin, load_class_folders
    from .nets import get_spec

    if dataset in BUILTIN_DATASETS:
        b = BUILTIN_DATASETS[dataset]
        spec = get_spec(arch or b.architecture)
        if (spec.channels, spec.image_size) != (b.channels, b.image_size):
            raise InputError(f"--arch {spec.name} takes {spec.channels}x{spec.image_size}x{spec.image_size} images; {dataset} has {b.channels}x{b.image_size}x{b.image_size}")
        train, test = load_builtin(dataset, root, True, download), load_builtin(dataset, root, False, download)
        return BenchmarkData(dataset, train.source, spec, train, test)
    path = Path(dataset)
    if not path.is_dir():
        raise InputError(f"'{dataset}' is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) nor a folder")
    spec = get_spec(arch or "mnist")
    train = load_class_folders(path, "train", spec.image_size, spec.channels)
    test = load_class_folders(path, "test", spec.image_size, spec.channels)
    source = f"image folders {path} ({len(train.classes)} classes)"
    return BenchmarkData(path.resolve().name, source, spec, train, test)
