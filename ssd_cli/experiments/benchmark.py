"""`ssd benchmark`: the paper's experiments (section 3) rerun with this tool's own engine.

A plan is a list of runs (scenario, level, normal class, seed, method, nu). Runs that share a
training set share its data and its autoencoder pretraining; each finished run is appended to
results.jsonl at once, and each pretrained autoencoder is saved in autoencoders/ until the plan is
complete, so a stopped benchmark resumes where it left off without pretraining again. Nothing here
prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from ssd_cli import __version__
from ssd_cli.core.config import (
    Objective,
    OptimConfig,
    Preprocessing,
    TrainConfig,
)
from ssd_cli.data.datasets import LabeledImages
from ssd_cli.errors import InputError, ModelFileError, UsageError
from ssd_cli.core.model import SavedAutoencoder
from ssd_cli.io.modelfile import load_autoencoder, save_autoencoder
from ssd_cli.core.estimate import StepCost, step_cost
from ssd_cli.metrics import auroc
from ssd_cli.core.nets import AutoEncoder, Classifier, LeNetSpec
from ssd_cli.core.pipeline import initial_encoder, pretrain, training_tensors
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.core.presets import schedule_for
from ssd_cli.core.presets import with_epochs as scale_epochs
from ssd_cli.experiments.report import record_decoder
from ssd_cli.experiments.protocol import (
    Method,
    Scenario,
    TrainingSet,
    draw_training_set,
    methods_for_level,
    test_targets,
    training_counts,
)
from ssd_cli.core.stacked import (
    pretrain_autoencoders_stacked,
    train_classifiers_stacked,
    train_deep_svdd_stacked,
)
from ssd_cli.core.training import (
    classifier_scores,
    distances,
    seeded_init,
    train_classifier,
    train_deep_svdd,
)

RESULTS_FILE = "results.jsonl"
AUTOENCODER_DIR = "autoencoders"  # pretrained autoencoders of an unfinished plan, for resume
PAPER_NUS = (0.01, 0.1)


class Preset(str, Enum):
    PAPER = "paper"  # Appendix C training; the Deep SVDD code's pretraining epochs (the paper gives none); 10 seeds
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
    schedule = schedule_for(spec.name)
    if preset is Preset.PAPER:
        return BenchmarkSettings(train=schedule.train, pretrain=schedule.pretrain, seeds=10, label=preset.value)
    # quick: the same schedule shape (a 10x lr drop two thirds in), a tenth of the epochs or less
    return BenchmarkSettings(
        train=replace(schedule.train, epochs=6, lr_milestones=(4,)),
        pretrain=replace(schedule.pretrain, epochs=6, lr_milestones=(4,)),
        seeds=1,
        label=preset.value,
    )


def with_epochs(s: BenchmarkSettings, train_epochs: int | None, pretrain_epochs: int | None) -> BenchmarkSettings:
    """Override epochs; the milestone keeps its relative place, and the label records the change."""
    train, pre = scale_epochs(s.train, train_epochs), scale_epochs(s.pretrain, pretrain_epochs)
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
    choice: tuple[str, ...] = ()  # why this network, when it was chosen from the images

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


RANK_FILES = "results.rank*.jsonl"  # what each rank of a torchrun benchmark appends to


def rank_file(rank: int) -> str:
    return f"results.rank{rank}.jsonl"


def results_files(out_dir: Path) -> list[Path]:
    """results.jsonl and the per-rank files of a distributed run not merged yet (resume reads all)."""
    main = out_dir / RESULTS_FILE
    return ([main] if main.exists() else []) + sorted(out_dir.glob(RANK_FILES))


def record_identity(r: dict) -> tuple:
    """What makes a run the same run: dataset, network and settings (the pretraining decoder too) and
    the run's key. Records from before ssd 0.4 name no network (None)."""
    return (r["dataset"], r.get("network"), r["preset"], r["preprocessing"], record_decoder(r), r["scenario"], float(r["level"]), r["normal_class"], r["seed"], r["method"], r["nu"])


def _records(path: Path) -> Iterator[tuple[str, dict]]:
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
            record_identity(r)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a stop; that run is simply redone
        yield line, r


def completed_keys(out_dir: Path, data: BenchmarkData, settings: BenchmarkSettings) -> set[tuple]:
    """Keys of the runs the results files already hold for this dataset, network and settings (resume)."""
    done: set[tuple] = set()
    for path in results_files(out_dir):
        for _, r in _records(path):
            same_settings = r["preset"] == settings.label and r["preprocessing"] == settings.preprocessing.value
            same_network = r.get("network", data.spec.name) == data.spec.name and record_decoder(r) == data.spec.decoder
            if r["dataset"] == data.name and same_settings and same_network:
                done.add((r["scenario"], float(r["level"]), r["normal_class"], r["seed"], r["method"], r["nu"]))
    return done


def merge_rank_files(out_dir: Path) -> int:
    """Append the runs of the per-rank files that results.jsonl lacks, then remove those files;
    returns how many runs were added. Safe to repeat after a stop: a run is never added twice."""
    main = out_dir / RESULTS_FILE
    known = {record_identity(r) for _, r in _records(main)} if main.exists() else set()
    added = 0
    for path in sorted(out_dir.glob(RANK_FILES)):
        for _, r in _records(path):
            if record_identity(r) not in known:
                append_record(main, r)
                known.add(record_identity(r))
                added += 1
        path.unlink()
    return added


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
class _Cache:
    """Per-class preprocessing and test tensors, and autoencoders per training set."""

    pre: dict[int, Preprocessor] = field(default_factory=dict)
    test: dict[int, torch.Tensor] = field(default_factory=dict)
    ae: dict[tuple, AutoEncoder] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    run: Run
    record: dict


@dataclass
class _Prepared:
    """One run's training set, as tensors on the device."""

    run: Run
    ts: TrainingSet
    x: torch.Tensor
    y: torch.Tensor
    # The autoencoder sees the unlabeled part only, so every method and level with the same
    # unlabeled samples and seed shares one pretraining (all levels of scenario (i), say).
    ae_key: str


def autoencoder_key(data: BenchmarkData, settings: BenchmarkSettings, run: Run, ts: TrainingSet) -> str:
    """Names one pretraining: everything it depends on, hashed, so a saved autoencoder is only ever
    reused for the same network, decoder, schedule, preprocessing, class, seed and unlabeled samples."""
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


MAX_STACK = 32  # runs trained at once; bounds the memory of the stacked data


def group_runs(runs: list[Run], stack: bool) -> list[list[Run]]:
    """Runs trained together: with stacking, all seeds and methods of one setup that share N."""
    if not stack:
        return [[r] for r in runs]
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        kind = "supervised" if r.method is Method.SUPERVISED else ("ss" if r.method.uses_labels else "unsupervised")
        groups.setdefault((r.scenario, r.level, r.normal_class, kind), []).append(r)
    return [g[i : i + MAX_STACK] for g in groups.values() for i in range(0, len(g), MAX_STACK)]


def run_benchmark(
    data: BenchmarkData,
    runs: list[Run],
    settings: BenchmarkSettings,
    out_dir: Path,
    device: torch.device,
    *,
    stack: bool = False,
    on_start: Callable[[list[Run]], None] | None = None,
    results_name: str = RESULTS_FILE,
) -> Iterator[RunResult]:
    """Execute the runs, appending each finished one to results.jsonl and yielding it.

    With `stack`, runs that share the training-set size are trained at once (ssd_cli.core.stacked),
    which keeps a GPU busy; the results equal those of training them one by one up to rounding.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / results_name
    cache = _Cache()
    train_labels = data.train.labels.numpy()
    for group in group_runs(runs, stack):
        if on_start is not None:
            on_start(group)
        start = time.perf_counter()
        pre = _preprocessor(cache, data, group[0].normal_class, settings.preprocessing)
        x_test = _test_tensor(cache, data, group[0].normal_class, pre, device)
        is_anomaly = test_targets(data.test.labels.numpy(), group[0].normal_class)
        prepared = [_prepare(data, settings, run, train_labels, pre, device) for run in group]
        all_scores = _train_and_score(data.spec, prepared, x_test, settings, cache, _AutoencoderStore(out_dir, pre))
        seconds = (time.perf_counter() - start) / len(group)
        for p, scores in zip(prepared, all_scores):
            record = _record(data, p, auroc(scores, is_anomaly), seconds, settings, device, len(group))
            append_record(results, record)
            yield RunResult(p.run, record)


def _draw(data: BenchmarkData, run: Run, train_labels: np.ndarray) -> TrainingSet:
    return draw_training_set(train_labels, run.normal_class, run.scenario, run.level, run.seed, data.n_classes)


def _prepare(data: BenchmarkData, settings: BenchmarkSettings, run: Run, train_labels: np.ndarray, pre: Preprocessor, device: torch.device) -> _Prepared:
    ts = _draw(data, run, train_labels)
    unlabeled = data.train.images[torch.tensor(ts.unlabeled_idx)]
    labeled = data.train.images[torch.tensor(ts.labeled_idx)] if run.method.uses_labels else None
    x, y = training_tensors(pre, device, unlabeled, None, labeled)
    return _Prepared(run, ts, x, y, autoencoder_key(data, settings, run, ts))


def _record(data: BenchmarkData, p: _Prepared, auc: float, seconds: float, s: BenchmarkSettings, device: torch.device, stacked: int) -> dict:
    run, ts = p.run, p.ts
    return {
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
        "seconds": round(seconds, 3),
        "tool_version": __version__,
        "preset": s.label,
        "preprocessing": s.preprocessing.value,
        "network": data.spec.name,
        "decoder": data.spec.decoder,
        "n_unlabeled": len(ts.unlabeled_idx),
        "n_polluted": len(ts.polluted_idx),
        "n_labeled": len(ts.labeled_idx) if run.method.uses_labels else 0,
        "train_epochs": s.train.epochs,
        "pretrain_epochs": s.pretrain.epochs if run.method.is_deep_svdd else 0,
        "device": str(device),
        "stacked_runs": stacked,
    }


def _preprocessor(cache: _Cache, data: BenchmarkData, normal_class: int, kind: Preprocessing) -> Preprocessor:
    """Statistics from the normal class's training data, as the original Deep SVDD code."""
    if normal_class not in cache.pre:
        cache.pre[normal_class] = Preprocessor.fit(kind, data.train.images[data.train.labels == normal_class])
    return cache.pre[normal_class]


def _test_tensor(cache: _Cache, data: BenchmarkData, normal_class: int, pre: Preprocessor, device: torch.device) -> torch.Tensor:
    if normal_class not in cache.test:
        cache.test.clear()  # one class at a time: the plan visits classes in order within a level
        cache.test[normal_class] = pre(data.test.images.to(device)).contiguous(memory_format=torch.channels_last)
    return cache.test[normal_class]


@dataclass(frozen=True)
class _AutoencoderStore:
    """Pretrained autoencoders on disk, as `ssd pretrain` writes them: a benchmark stopped after
    hours of pretraining takes them up again instead of pretraining once more."""

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

    def save(self, p: _Prepared, spec: LeNetSpec, ae: AutoEncoder, s: BenchmarkSettings, losses: list[float], seconds: float) -> None:
        """With the training record `ssd pretrain` writes, so `ssd info` describes it alike."""
        path = autoencoder_path(self.out_dir, p.ae_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        training = {
            "n_unlabeled": int((p.y == 0).sum()),
            "epochs": s.pretrain.epochs,
            "final_loss": losses[-1] if losses else None,
            "seconds": round(seconds, 2),
            "seed": p.run.seed,
            "device": str(p.x.device),
            "config": asdict(s.pretrain),
            "benchmark_pretraining": p.ae_key,
        }
        save_autoencoder(path, SavedAutoencoder(spec, self.pre, ae.state_dict(), training), force=True)


def _train_and_score(
    spec: LeNetSpec, prepared: list[_Prepared], x_test: torch.Tensor, s: BenchmarkSettings, cache: _Cache, store: _AutoencoderStore
) -> list[np.ndarray]:
    """Train every run of a group (one by one, or stacked when there are several) and score the test set."""
    runs = [p.run for p in prepared]
    seeds = [r.seed for r in runs]
    device = x_test.device
    if runs[0].method is Method.SUPERVISED:
        clfs = [seeded_init(lambda: Classifier(spec), r.seed).to(device) for r in runs]
        if len(runs) == 1:
            train_classifier(clfs[0], prepared[0].x, prepared[0].y, s.train, seed=seeds[0])
        else:
            train_classifiers_stacked(clfs, [p.x for p in prepared], [p.y for p in prepared], s.train, seeds)
        return [classifier_scores(clf, x_test).float().cpu().numpy() for clf in clfs]

    missing = {p.ae_key: p for p in prepared if p.ae_key not in cache.ae}
    if missing:
        if len(cache.ae) + len(missing) > 64:  # keep memory bounded: drop what this group does not use
            cache.ae = {k: v for k, v in cache.ae.items() if k in {p.ae_key for p in prepared}}
        loaded = {k: store.load(k, spec, device) for k in missing}
        cache.ae.update({k: ae for k, ae in loaded.items() if ae is not None})
        todo = [p for k, p in missing.items() if loaded[k] is None]
        start = time.perf_counter()
        losses: list[list[float]] = []
        if len(todo) == 1:
            cache.ae[todo[0].ae_key], first = pretrain(spec, todo[0].x[todo[0].y == 0], s.pretrain, seed=todo[0].run.seed)
            losses = [first]
        elif todo:
            aes = [seeded_init(lambda: AutoEncoder(spec), p.run.seed).to(device) for p in todo]
            losses = pretrain_autoencoders_stacked(aes, [p.x[p.y == 0] for p in todo], s.pretrain, [p.run.seed for p in todo])
            cache.ae.update({p.ae_key: ae for p, ae in zip(todo, aes)})
        seconds = (time.perf_counter() - start) / max(len(todo), 1)
        for p, run_losses in zip(todo, losses):
            store.save(p, spec, cache.ae[p.ae_key], s, run_losses, seconds)
    encoders = [initial_encoder(spec, cache.ae[p.ae_key], p.run.seed, device) for p in prepared]
    cfgs = [
        TrainConfig(
            objective=Objective.SOFT_BOUNDARY if r.method.is_soft_boundary else Objective.ONE_CLASS,
            nu=r.nu if r.nu is not None else 0.1,
            optim=s.train,
        )
        for r in runs
    ]
    if len(runs) == 1:
        results = [train_deep_svdd(encoders[0], prepared[0].x, prepared[0].y, cfgs[0], seed=seeds[0])]
    else:
        results = train_deep_svdd_stacked(encoders, [p.x for p in prepared], [p.y for p in prepared], cfgs, seeds)
    return [distances(e, r.c, x_test).float().cpu().numpy() for e, r in zip(encoders, results)]


def _pretraining(run: Run) -> tuple:
    """Runs with the same value share one pretraining: in scenario (i) the labeled level leaves
    the unlabeled samples alone, so every level of a class and seed shares it."""
    return (run.scenario, run.level if run.scenario is not Scenario.LABELED else 0, run.normal_class, run.seed)


def saved_autoencoders(out_dir: Path, data: BenchmarkData, settings: BenchmarkSettings, runs: list[Run]) -> dict[tuple, Path]:
    """The pretrainings these runs need, by setup, whose autoencoder a stopped run saved."""
    labels = data.train.labels.numpy()
    firsts = {_pretraining(r): r for r in reversed(runs) if r.method.is_deep_svdd}
    paths = {k: autoencoder_path(out_dir, autoencoder_key(data, settings, r, _draw(data, r, labels))) for k, r in firsts.items()}
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


def estimate_seconds(
    runs: list[Run], data: BenchmarkData, settings: BenchmarkSettings, device: torch.device, cost: StepCost | None = None, saved: Collection[tuple] = ()
) -> float:
    """A rough time for the plan, one run after the other, from a few timed training steps of this
    architecture here (or from `cost`, timed before); the pretrainings in `saved` (see
    saved_autoencoders) cost nothing. Each run trains on its unlabeled samples (pollution included)
    and, if its method uses them, its labeled anomalies (up to a quarter more at 20%); each
    pretraining sees the unlabeled samples only."""
    cost = cost or step_cost(data.spec, device, settings.train.batch_size)
    n_class = {c: int((data.train.labels == c).sum()) for c in range(data.n_classes)}

    def sizes(r: Run) -> tuple[int, int]:  # (unlabeled, labeled) samples of the run's training set
        n_poll, m = training_counts(n_class[r.normal_class], r.scenario.settings(r.level))
        return n_class[r.normal_class] + n_poll, m if r.method.uses_labels else 0

    firsts = {_pretraining(r): r for r in reversed(runs) if r.method.is_deep_svdd}
    done = set(saved)
    pretrainings = [r for key, r in firsts.items() if key not in done]
    total = sum(sum(sizes(r)) * settings.train.epochs * cost.encoder for r in runs)
    total += sum(sizes(r)[0] * settings.pretrain.epochs * cost.autoencoder for r in pretrainings)
    return total


def load_benchmark_data(dataset: str, root: Path, download: bool, arch: str | None, decoder: str | None = None) -> BenchmarkData:
    """A built-in dataset by name, or a folder with train/<class>/ and test/<class>/ image folders;
    `decoder` replaces the network's own pretraining decoder."""
    data = _load_benchmark_data(dataset, root, download, arch)
    if decoder is None or decoder == data.spec.decoder:
        return data
    try:
        return replace(data, spec=replace(data.spec, decoder=decoder))
    except ValueError as exc:
        raise UsageError(f"--decoder: {exc}") from None


def _load_benchmark_data(dataset: str, root: Path, download: bool, arch: str | None) -> BenchmarkData:
    from ssd_cli.data.datasets import BUILTIN_DATASETS, load_builtin, load_class_folders
    from ssd_cli.core.nets import get_spec

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
    spec, reasons = _folder_network(path, arch)
    train = load_class_folders(path, "train", spec.image_size, spec.channels)
    test = load_class_folders(path, "test", spec.image_size, spec.channels)
    source = f"image folders {path} ({len(train.classes)} classes)"
    return BenchmarkData(path.resolve().name, source, spec, train, test, reasons)


def _folder_network(path: Path, arch: str | None) -> tuple[LeNetSpec, tuple[str, ...]]:
    """For a folder dataset the network is chosen from its training images, as `ssd train` does."""
    from ssd_cli.core.nets import get_spec
    from ssd_cli.data.scan import choose_input, scan_inputs

    choice = choose_input(scan_inputs({"train": [path / "train"]}), arch=arch)
    try:
        return get_spec(choice.arch, choice.channels, choice.image_size), choice.reasons
    except ValueError as exc:
        raise UsageError(str(exc)) from None
