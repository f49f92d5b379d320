"""Terminal output for the CLI: progress bars, warnings and tables (the engine never prints)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .training import EpochInfo

if TYPE_CHECKING:  # imported lazily: `ssd score` should not pay for scikit-learn and torchvision
    from .benchmark import BenchmarkData, BenchmarkSettings, Run
    from .config import OptimConfig
    from .engine import TrainPlan
    from .scan import RoleScan, Spread
    from .images import Skipped
    from .metrics import DetectionMetrics
    from .report import Cell, Summary

console = Console()
err_console = Console(stderr=True)

MAX_NAMED = 20


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


def warn_skipped(skipped: Sequence[Skipped], what: str) -> None:
    """Name every skipped file (up to MAX_NAMED, then a count), so nothing is dropped silently."""
    if not skipped:
        return
    shown = "; ".join(f"{s.path} ({s.reason})" for s in skipped[:MAX_NAMED])
    more = f"; and {len(skipped) - MAX_NAMED} more" if len(skipped) > MAX_NAMED else ""
    warn(f"{what}: skipped {len(skipped)} file(s): {shown}{more}")


def new_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


@contextmanager
def stage_progress() -> Iterator[Callable[[str, EpochInfo], None]]:
    """One progress bar per training stage (pretraining, training), created when the stage starts;
    yields the engine's (stage, epoch info) callback."""
    with new_progress() as progress:
        tasks: dict[str, TaskID] = {}

        def on_epoch(stage: str, info: EpochInfo) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=info.epochs, status="")
            progress.update(tasks[stage], completed=info.epoch, status=f"loss {info.loss:.4g}  lr {info.lr:.0e}")

        yield on_epoch


def render_train_plan(plan: TrainPlan, *, pretrain_only: bool = False) -> None:
    """The plan, before any long work: what was found, what was chosen and why, and what it costs."""
    lines = [f"[bold]plan[/]: {_what(plan, pretrain_only)} on {plan.device}"]
    for role, scan in plan.scan.roles.items():
        used = len(plan.files.get(role, scan.files))
        lines.append(f"  {role}: {used} image file(s){_skipped(scan)}; {_looks(scan)}")
    spec, side = plan.spec, plan.input_size
    why = f" ({'; '.join(plan.choice.reasons)})" if plan.choice.reasons else " (as given)"
    shape = f"{spec.channels}x{side}x{side}"
    if plan.patches is not None:
        shape = f"{spec.channels}x{spec.image_size}x{spec.image_size} patches of {shape} images"
    lines.append(f"  network: {spec.name}, {shape}{why}")
    if plan.patches is not None:
        p = plan.patches.spec
        lines.append(
            f"  patches: phi sees {p.patch_size} px patches ({plan.patches.per_image} random ones per image and epoch); "
            f"an image scores as the worst of its {p.grid}x{p.grid} grid patches, {p.stride} px apart"
        )
    lines.append(f"  input: --resize {plan.resize.value}, preprocessing {plan.preprocessing.value}")
    if plan.pretrained is not None:
        lines.append(f"  pretraining: none, phi starts from {plan.request.pretrained}")
    elif plan.pretrain is not None:
        lines.append(f"  pretraining: {_optim(plan.pretrain)}")
    else:
        lines.append("  pretraining: none (phi starts from random weights)")
    if not pretrain_only:
        lines.append(f"  training: {plan.cfg.objective.value}, {_optim(plan.cfg.optim)}")
    if plan.estimate_seconds is not None:
        lines.append(f"  estimate: about {_duration(plan.estimate_seconds)} of training here (from a few timed steps), plus decoding the images")
    console.print("\n".join(lines), highlight=False)


def _what(plan: TrainPlan, pretrain_only: bool) -> str:
    if pretrain_only:
        return "pretrain the autoencoder"
    labeled = len(plan.files.get("--normals", [])) + len(plan.files.get("--anomalies", []))
    return f"train {'SS-DSVDD' if labeled else 'Deep SVDD'}"


def _skipped(scan: RoleScan) -> str:
    return f" ({len(scan.skipped)} other file(s) skipped)" if scan.skipped else ""


def _looks(scan: RoleScan) -> str:
    """What the sample showed, in a few words."""
    if not scan.readable:
        return f"none of {scan.sampled} sampled files readable"
    short, aspect = scan.short_side, scan.aspect
    colour = f"{100 * (scan.colour_fraction or 0):.0f}% colour"
    width, height = scan.width, scan.height
    sizes = f"{_span(width)} x {_span(height)} px (median short side {short.median:g})"
    formats = ", ".join(f"{k} {v}" for k, v in scan.formats.items())
    return f"sample of {scan.sampled}: {colour}, {sizes}, aspect {aspect.min:.2f}-{aspect.max:.2f}, {formats}"


def _span(s: Spread) -> str:
    return f"{s.min:g}" if s.min == s.max else f"{s.min:g}-{s.max:g}"


def _optim(o: OptimConfig) -> str:
    drops = f", x0.1 at epoch {', '.join(map(str, o.lr_milestones))}" if o.lr_milestones else ""
    return f"{o.epochs} epochs, Adam lr {o.lr:g}{drops}, weight decay {o.weight_decay:g}, batch {o.batch_size}"


def metrics_table(m: DetectionMetrics, title: str) -> Table:
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("AUROC", f"{m.auroc:.4f}"),
        ("AUPRC", f"{m.auprc:.4f}"),
        ("threshold", f"{m.threshold:.5g}"),
        ("precision", f"{m.precision:.4f}"),
        ("recall", f"{m.recall:.4f}"),
        ("F1", f"{m.f1:.4f}"),
        ("normal / anomalous", f"{m.n_normal} / {m.n_anomalous}"),
        ("TP / FP / TN / FN", f"{m.tp} / {m.fp} / {m.tn} / {m.fn}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def describe_runs(runs: list[Run]) -> str:
    run = runs[0]
    if len(runs) > 1:
        return f"{run.scenario.value} {run.scenario.format_level(run.level)} class {run.normal_class}: {len(runs)} runs stacked"
    nu = f" nu={run.nu:g}" if run.nu is not None else ""
    return f"{run.scenario.value} {run.scenario.format_level(run.level)} class {run.normal_class} seed {run.seed} {run.method.value}{nu}"


def render_plan(data: BenchmarkData, s: BenchmarkSettings, runs: list[Run], todo: list[Run], estimate: float, device: object, out: Path, stacked: bool) -> None:
    console.print(
        f"[bold]benchmark[/] {data.name} ({data.source}); network {data.spec.name} "
        f"{data.spec.channels}x{data.spec.image_size}x{data.spec.image_size}{' (' + '; '.join(data.choice) + ')' if data.choice else ''}; device {device}\n"
        f"settings: {s.label}: train {s.train.epochs} epochs (lr {s.train.lr:g}, x0.1 at {list(s.train.lr_milestones)}), "
        f"autoencoder {s.pretrain.epochs} epochs, batch {s.train.batch_size}, preprocessing {s.preprocessing.value}, "
        f"soft-boundary nu in {list(s.nus)} (the better reported), {s.seeds} seed(s)\n"
        f"plan: {len(runs)} runs, {len(runs) - len(todo)} already in {out}, {len(todo)} to do; "
        f"estimated {_duration(estimate)} here, one run at a time{' (stacking runs should be faster)' if stacked else ''}",
        highlight=False,
    )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h} h {rest // 60} min" if h else f"{rest // 60} min {rest % 60} s"


@contextmanager
def run_progress(total: int) -> Iterator[tuple[Progress, TaskID]]:
    with new_progress() as progress:
        yield progress, progress.add_task("runs", total=total, status="")


def render_summary(summary: Summary) -> None:
    from .report import format_cell

    for t in summary.tables:
        table = Table(title=f"{t.dataset}: {t.scenario.heading} — AUC %, ours (paper, ours − paper)")
        table.add_column(t.scenario.axis_label)
        for m in t.methods:
            table.add_column(m.display_name, overflow="fold")
        for level in t.levels:
            cells = [t.cells.get((level, m)) for m in t.methods]
            table.add_row(t.scenario.format_level(level), *[format_cell(c) + _nu(c) if c else "" for c in cells])
        console.print(table)
    console.print(
        f"{summary.n_runs} runs; data: {'; '.join(summary.data_sources)}; settings: {', '.join(summary.presets)}; "
        f"preprocessing: {', '.join(summary.preprocessings)}. Soft-boundary cells are the better of nu in {{0.01, 0.1}} "
        "(chosen nu shown), as the paper did; † = SS-DSVDD with no labels is the unsupervised method (same runs).",
        highlight=False,
    )


def _nu(cell: Cell) -> str:
    return f" nu={cell.nu:g}" if cell.nu is not None and cell.n else ""
