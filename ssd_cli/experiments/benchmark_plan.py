"""Planning a benchmark: from what the user asked to the runs still to do and their cost here.

`plan_benchmark` loads the data, fixes the settings, lists every run, leaves out those already in
results.jsonl and estimates the time from a few timed training steps; `cheaper_plans` says what
smaller plans would cost, so a plan of many hours is never started by accident. The CLI renders the
plan and asks; `run_plan` carries it out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ssd_cli.core.ranks import Ranks, ranks
from ssd_cli.core import distributed
from ssd_cli.core.config import Preprocessing
from ssd_cli.core.estimate import StepCost, step_cost
from ssd_cli.device import resolve_device
from ssd_cli.errors import OutputExistsError, UsageError
from ssd_cli.experiments.autoencoders import forget_autoencoders, saved_autoencoders
from ssd_cli.experiments.benchmark import RunResult, run_benchmark
from ssd_cli.experiments.data import BenchmarkData, load_benchmark_data
from ssd_cli.experiments.protocol import Method, Scenario, training_counts
from ssd_cli.experiments.results import RESULTS_FILE, completed_keys, merge_rank_files, rank_file, results_lock
from ssd_cli.experiments.runs import Run, plan_runs
from ssd_cli.experiments.settings import PAPER_NUS, BenchmarkSettings, Preset, preset_settings, with_epochs

LONG_PLAN_SECONDS = 3600.0  # plans longer than this are confirmed before they start


@dataclass(frozen=True)
class BenchmarkRequest:
    """Everything `ssd benchmark` can be asked; None keeps the preset's or the dataset's own."""

    dataset: str
    out: Path
    scenarios: tuple[str, ...] = ("labeled",)  # or "all"
    classes: tuple[int, ...] | None = None
    seeds: int | None = None
    levels: tuple[float, ...] | None = None
    methods: tuple[str, ...] | None = None
    preset: str = "paper"
    epochs: int | None = None
    pretrain_epochs: int | None = None
    nus: tuple[float, ...] = PAPER_NUS
    preprocessing: Preprocessing = Preprocessing.GCN
    arch: str | None = None
    decoder: str | None = None  # the autoencoder's decoder; None: the network's own
    data_root: Path | None = None
    download: bool = False
    device: str = "auto"
    stack: str = "auto"  # auto (on CUDA only), on, off


@dataclass(frozen=True)
class BenchmarkPlan:
    request: BenchmarkRequest
    data: BenchmarkData
    settings: BenchmarkSettings
    runs: list[Run]
    todo: list[Run]  # the runs not yet in results.jsonl
    estimate_seconds: float
    device: torch.device
    stack: bool
    cost: StepCost  # timed training steps here, for estimating other plans too

    @property
    def is_long(self) -> bool:
        return self.estimate_seconds > LONG_PLAN_SECONDS


def _parsed(req: BenchmarkRequest) -> tuple[list[Scenario], list[Method], Preset]:
    try:
        scenarios = list(Scenario) if "all" in req.scenarios else [Scenario(s) for s in req.scenarios]
        methods = list(Method) if req.methods is None else [Method(m) for m in req.methods]
        preset = Preset(req.preset)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if req.stack not in ("auto", "on", "off"):
        raise UsageError(f"--stack must be auto, on or off, got '{req.stack}'")
    if req.seeds is not None and req.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {req.seeds}")
    if not req.nus or any(not (0 < nu <= 1) for nu in req.nus):
        raise UsageError(f"--nus must be values in (0, 1], got {list(req.nus)}")
    return scenarios, methods, preset


def plan_benchmark(req: BenchmarkRequest) -> BenchmarkPlan:
    """Load the data and fix every run; nothing is trained but a few timed steps for the estimate."""
    from ssd_cli.data.datasets import resolve_data_root
    from ssd_cli.core.stacked import stack_is_faster

    scenarios, methods, preset = _parsed(req)
    device = resolve_device(req.device)
    data = load_benchmark_data(req.dataset, resolve_data_root(req.data_root), req.download, req.arch, req.decoder)
    classes = list(range(data.n_classes)) if req.classes is None else list(req.classes)
    if any(not 0 <= c < data.n_classes for c in classes):
        raise UsageError(f"--classes must be between 0 and {data.n_classes - 1}")
    settings = _settings(req, preset, data)
    runs = plan_runs(scenarios, classes, settings.seeds, methods, settings.nus, None if req.levels is None else list(req.levels))
    done = completed_keys(req.out, data, settings)
    todo = [r for r in runs if r.key() not in done]
    cost = step_cost(data.spec, device, settings.train.batch_size)
    saved = saved_autoencoders(req.out, data, settings, todo)
    estimate = distributed.broadcast(wall_seconds(todo, data, settings, device, cost, saved, ranks().world_size))  # every rank decides alike
    stack = req.stack == "on" or (req.stack == "auto" and stack_is_faster(device))
    return BenchmarkPlan(req, data, settings, runs, todo, estimate, device, stack, cost)


def wall_seconds(
    runs: list[Run], data: BenchmarkData, settings: BenchmarkSettings, device: torch.device,
    cost: StepCost, saved: Collection[tuple] = (), world_size: int = 1,
) -> float:  # fmt: skip
    """The plan's estimated wall time on `world_size` torchrun ranks. Each rank takes whole setups
    (`shard`: a class and seed share data and pretraining), so this is the most loaded rank when
    setups go, largest first, to the least loaded one: about the total / world_size, never less
    than the largest setup. One process: the runs one after the other."""
    if world_size <= 1:
        return estimate_seconds(runs, data, settings, device, cost, saved)
    setups: dict[tuple, list[Run]] = {}
    for run in runs:
        setups.setdefault((run.scenario.value, run.normal_class, run.seed), []).append(run)
    load = [0.0] * world_size
    for seconds in sorted((estimate_seconds(g, data, settings, device, cost, saved) for g in setups.values()), reverse=True):
        load[load.index(min(load))] += seconds
    return max(load)


def _settings(req: BenchmarkRequest, preset: Preset, data: BenchmarkData) -> BenchmarkSettings:
    try:
        settings = with_epochs(preset_settings(preset, data.spec), req.epochs, req.pretrain_epochs)
    except ValueError as exc:  # negative --epochs and the like
        raise UsageError(str(exc)) from None
    return replace(settings, preprocessing=req.preprocessing, nus=tuple(req.nus), seeds=req.seeds or settings.seeds)


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

    firsts = {r.pretraining(): r for r in reversed(runs) if r.method.is_deep_svdd}
    done = set(saved)
    pretrainings = [r for key, r in firsts.items() if key not in done]
    total = sum(sum(sizes(r)) * settings.train.epochs * cost.encoder for r in runs)
    total += sum(sizes(r)[0] * settings.pretrain.epochs * cost.autoencoder for r in pretrainings)
    return total


def cheaper_plans(plan: BenchmarkPlan) -> list[tuple[str, float | None]]:
    """Smaller plans and their estimated time here (None: not estimated), for the user to choose
    from when a plan is long: the quick preset, one seed, one normal class, a GPU."""
    req, data = plan.request, plan.data
    scenarios, methods, _ = _parsed(req)
    classes = list(range(data.n_classes)) if req.classes is None else list(req.classes)
    levels = None if req.levels is None else list(req.levels)

    def estimate(settings: BenchmarkSettings, some_classes: list[int]) -> float:
        runs = plan_runs(scenarios, some_classes, settings.seeds, methods, settings.nus, levels)
        return wall_seconds(runs, data, settings, plan.device, plan.cost, (), ranks().world_size)

    out: list[tuple[str, float | None]] = []
    if req.preset != Preset.QUICK.value:
        quick = _settings(replace(req, epochs=None, pretrain_epochs=None), Preset.QUICK, data)
        out.append(("--preset quick (6 + 6 epochs, 1 seed)", estimate(quick, classes)))
    if plan.settings.seeds > 1:
        out.append(("--seeds 1", estimate(replace(plan.settings, seeds=1), classes)))
    if len(classes) > 1:
        out.append((f"--classes {classes[0]} (one normal class of {len(classes)})", estimate(plan.settings, classes[:1])))
    if plan.device.type == "cpu":
        out.append(("a GPU (--device cuda; runs are stacked there)", None))
    return out


def run_plan(
    plan: BenchmarkPlan,
    on_start: Callable[[list[Run]], None] | None = None,
    on_assigned: Callable[[int], None] | None = None,
) -> Iterator[RunResult]:
    """Carry the plan out: every finished run is in a results file before the next starts.

    The results folder is locked for the whole run (a second benchmark into it stops at once with
    exit code 5), and the runs finished meanwhile by another process are left out, so no run is
    ever done twice. Under torchrun, rank 0 holds the lock, each rank runs its share (`shard`) and
    appends to its own results.rankN.jsonl, and rank 0 merges those into results.jsonl at the end.
    `on_assigned` is told how many runs this process will do.
    """
    r = ranks()
    out = plan.request.out
    with ExitStack() as stack:
        problem = None
        if r.is_main:
            out.mkdir(parents=True, exist_ok=True)
            try:
                stack.enter_context(results_lock(out))
            except OutputExistsError as exc:
                problem = str(exc)
        problem = distributed.broadcast(problem)
        if problem:
            raise OutputExistsError(problem)
        done = completed_keys(out, plan.data, plan.settings)
        todo = shard([run for run in plan.todo if run.key() not in done], plan, r) if r.active else [run for run in plan.todo if run.key() not in done]
        if on_assigned is not None:
            on_assigned(len(todo))
        name = rank_file(r.rank) if r.active else RESULTS_FILE
        yield from run_benchmark(plan.data, todo, plan.settings, out, plan.device, stack=plan.stack, on_start=on_start, results_name=name)
        distributed.barrier()
        if r.is_main:
            merge_rank_files(out)
            forget_autoencoders(out, plan.data, plan.settings, plan.runs)


def shard(runs: list[Run], plan: BenchmarkPlan, r: Ranks) -> list[Run]:
    """This rank's runs. Runs of one setup (normal class and seed: they share the training data and
    the autoencoder pretraining) stay together; setups go to ranks by estimated cost, largest first,
    each to the least loaded rank. Every rank computes the same split, with no communication."""
    labels = plan.data.train.labels
    setups: dict[tuple, list[Run]] = {}
    for run in runs:
        setups.setdefault((run.scenario.value, run.normal_class, run.seed), []).append(run)

    def cost(key: tuple, group: list[Run]) -> float:
        n = int((labels == key[1]).sum())
        return n * (len(group) * plan.settings.train.epochs + plan.settings.pretrain.epochs)

    load = [0.0] * r.world_size
    mine: set[tuple] = set()
    for key, group in sorted(setups.items(), key=lambda kv: (-cost(*kv), kv[0])):
        target = min(range(r.world_size), key=lambda i: (load[i], i))
        load[target] += cost(key, group)
        if target == r.rank:
            mine.add(key)
    return [run for run in runs if (run.scenario.value, run.normal_class, run.seed) in mine]
