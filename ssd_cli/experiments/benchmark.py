"""`ssd benchmark`: the paper's experiments (section 3) run with this tool's own engine.

Execution of a planned list of runs (experiments/runs.py): runs that share a training set share its
data and its autoencoder pretraining; each finished run is appended to the results store at once
(experiments/results.py), each pretrained autoencoder is saved in the autoencoder store until the
plan is complete (experiments/autoencoders.py). A run trains as every model does, through
core/pipeline.py; stacked runs (several at once, for a GPU) are its batched form (core/stacked.py).
Nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ssd_cli.core.config import Objective, Preprocessing, TrainConfig
from ssd_cli.core.nets import AutoEncoder, Classifier, LeNetSpec
from ssd_cli.core.pipeline import initial_encoder, pretrain, train_model, training_tensors
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.core.records import pretraining_record
from ssd_cli.core.stacked import pretrain_autoencoders_stacked, train_classifiers_stacked, train_deep_svdd_stacked
from ssd_cli.core.training import classifier_scores, distances, seeded_init, train_classifier
from ssd_cli.experiments.autoencoders import AutoencoderStore, autoencoder_key
from ssd_cli.experiments.data import BenchmarkData
from ssd_cli.experiments.protocol import Method, TrainingSet, test_targets
from ssd_cli.experiments.results import RESULTS_FILE, append_record, run_record
from ssd_cli.experiments.runs import Run, group_runs
from ssd_cli.experiments.settings import BenchmarkSettings
from ssd_cli.metrics import auroc

MAX_CACHED_AUTOENCODERS = 64  # pretrained autoencoders kept in memory across groups


@dataclass(frozen=True)
class RunResult:
    run: Run
    record: dict


@dataclass
class _Cache:
    """Per-class preprocessing and test tensors, and autoencoders per training set."""

    pre: dict[int, Preprocessor] = field(default_factory=dict)
    test: dict[int, torch.Tensor] = field(default_factory=dict)
    ae: dict[str, AutoEncoder] = field(default_factory=dict)


@dataclass
class _Prepared:
    """One run's training set, as tensors on the device."""

    run: Run
    ts: TrainingSet
    x: torch.Tensor
    y: torch.Tensor
    ae_key: str  # its pretraining (experiments/autoencoders.py)


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
    for group in group_runs(runs, stack):
        if on_start is not None:
            on_start(group)
        start = time.perf_counter()
        pre = _preprocessor(cache, data, group[0].normal_class, settings.preprocessing)
        x_test = _test_tensor(cache, data, group[0].normal_class, pre, device)
        is_anomaly = test_targets(data.test.labels.numpy(), group[0].normal_class)
        prepared = [_prepare(data, settings, run, pre, device) for run in group]
        all_scores = _train_and_score(data.spec, prepared, x_test, settings, pre, cache, AutoencoderStore(out_dir, pre))
        seconds = (time.perf_counter() - start) / len(group)
        for p, scores in zip(prepared, all_scores):
            record = run_record(data, p.run, p.ts, auroc(scores, is_anomaly), seconds, settings, device, len(group))
            append_record(results, record)
            yield RunResult(p.run, record)


def _prepare(data: BenchmarkData, settings: BenchmarkSettings, run: Run, pre: Preprocessor, device: torch.device) -> _Prepared:
    ts = data.training_set(run)
    unlabeled = data.train.images[torch.tensor(ts.unlabeled_idx)]
    labeled = data.train.images[torch.tensor(ts.labeled_idx)] if run.method.uses_labels else None
    x, y = training_tensors(pre, device, unlabeled, None, labeled)
    return _Prepared(run, ts, x, y, autoencoder_key(data, settings, run, ts))


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


def _train_and_score(
    spec: LeNetSpec, prepared: list[_Prepared], x_test: torch.Tensor, s: BenchmarkSettings, pre: Preprocessor, cache: _Cache, store: AutoencoderStore
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
    _pretrain_missing(spec, prepared, s, cache, store)
    cfgs = [
        TrainConfig(
            objective=Objective.SOFT_BOUNDARY if r.method.is_soft_boundary else Objective.ONE_CLASS,
            nu=r.nu if r.nu is not None else 0.1,
            optim=s.train,
        )
        for r in runs
    ]
    if len(runs) == 1:
        p = prepared[0]
        model = train_model(spec, p.x, p.y, cfgs[0], pre, seed=p.run.seed, autoencoder=cache.ae[p.ae_key])
        return [distances(model.encoder(device), model.c, x_test).float().cpu().numpy()]
    encoders = [initial_encoder(spec, cache.ae[p.ae_key], p.run.seed, device) for p in prepared]
    results = train_deep_svdd_stacked(encoders, [p.x for p in prepared], [p.y for p in prepared], cfgs, seeds)
    return [distances(e, r.c, x_test).float().cpu().numpy() for e, r in zip(encoders, results)]


def _pretrain_missing(spec: LeNetSpec, prepared: list[_Prepared], s: BenchmarkSettings, cache: _Cache, store: AutoencoderStore) -> None:
    """The group's autoencoders into the cache: from the store when a stopped run saved them, else
    pretrained (stacked when there are several) and saved, with the record `ssd pretrain` writes."""
    missing = {p.ae_key: p for p in prepared if p.ae_key not in cache.ae}
    if not missing:
        return
    if len(cache.ae) + len(missing) > MAX_CACHED_AUTOENCODERS:  # keep memory bounded: drop what this group does not use
        cache.ae = {k: v for k, v in cache.ae.items() if k in {p.ae_key for p in prepared}}
    device = prepared[0].x.device
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
        record = pretraining_record(int((p.y == 0).sum()), s.pretrain, run_losses, seconds, p.run.seed, p.x.device)
        store.save(p.ae_key, spec, cache.ae[p.ae_key], record)
