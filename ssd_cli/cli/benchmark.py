"""`ssd benchmark`: plan, confirm a long plan, run with progress, and print the tables beside the paper's."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ssd_cli.core.config import Preprocessing
from ssd_cli.errors import ExitCode, SsdError, UsageError
from ssd_cli.cli.app import app, handle_errors
from ssd_cli.cli.options import DataRootOpt, DecoderOpt, DeviceOpt, DownloadOpt, parse_ints
from ssd_cli.cli.render import console, describe_runs, duration, render_plan, render_summary, run_progress, warn


def interactive() -> bool:
    """Whether a person can answer a question (tests replace this)."""
    return sys.stdin.isatty()


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise UsageError(f"{option}: expected comma-separated numbers, got '{text}'") from None


@app.command()
@handle_errors
def benchmark(
    dataset: Annotated[str, typer.Argument(help="mnist, fashion-mnist, cifar10, a folder with train/<class>/ and test/<class>/ image folders, or 'report' to summarise an existing --out folder.")],
    report_dir: Annotated[Optional[Path], typer.Argument(metavar="[DIR]", help="With 'report': the results folder (same as --out).")] = None,
    scenario: Annotated[str, typer.Option(help="labeled (i), pollution (ii), classes (iii), or all.")] = "labeled",
    classes: Annotated[Optional[str], typer.Option(help="Normal classes to run, comma-separated (default: all).")] = None,
    seeds: Annotated[Optional[int], typer.Option(help="Seeds per setup (default: the preset's, 10 for paper, 1 for quick).")] = None,
    levels: Annotated[Optional[str], typer.Option(help="Levels to run, comma-separated (default: the paper's, e.g. 0,1,5,10,20).")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Methods, comma-separated, from: soft_dsvdd, one_class_dsvdd, soft_ss_dsvdd, one_class_ss_dsvdd, supervised (default: all).")] = None,
    preset: Annotated[str, typer.Option(help="paper: Appendix C training (150 epochs) with the original Deep SVDD code's autoencoder pretraining (150 epochs, 350 for cifar10; the paper does not give it), 10 seeds; quick: 6+6 epochs, 1 seed.")] = "paper",
    epochs: Annotated[Optional[int], typer.Option(help="Override the preset's training epochs (the lr drop keeps its relative place).")] = None,
    pretrain_epochs: Annotated[Optional[int], typer.Option(help="Override the preset's autoencoder pretraining epochs.")] = None,
    nus: Annotated[str, typer.Option(help="nu values for the soft-boundary methods (the paper runs 0.01 and 0.1); each table cell reports the nu with the better mean test AUC (the paper does not say how it chose; summary.csv lists every nu).")] = "0.01,0.1",
    preprocessing: Annotated[Preprocessing, typer.Option(help="gcn (the paper's: GCN l1 + min-max from the normal class's training data) or scale.")] = Preprocessing.GCN,
    arch: Annotated[Optional[str], typer.Option(help="Network (default: the dataset's own; for image folders chosen from the training images as `ssd train` does).")] = None,
    decoder: DecoderOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder: results.jsonl (resumable), autoencoders/ (until the plan is done), summary.csv/.md and figures.")] = Path("benchmark-results"),
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    stack: Annotated[str, typer.Option(help="Train the runs of one setup at once (seeds, methods): auto = on CUDA only, where it pays; on; off. Same results up to rounding.")] = "auto",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Start a plan estimated to take over an hour without asking (needed to start one without a terminal).")] = False,
) -> None:
    """Rerun the paper's experiments (Tables 1-3) with this engine and print them beside the paper's.

    Each finished run is appended to OUT/results.jsonl, and each pretrained autoencoder is kept in
    OUT/autoencoders/ until the plan is done; rerunning the same command resumes. A plan
    estimated at over an hour is shown with cheaper alternatives and asked about (default: no).
    At the end (or with `ssd benchmark report DIR`) a table per scenario is printed and written to OUT.
    """
    from ssd_cli.experiments.benchmark_plan import BenchmarkRequest, cheaper_plans, plan_benchmark, run_plan
    from ssd_cli.core.ranks import ranks

    if dataset == "report":
        _report(report_dir or out)
        return
    if report_dir is not None:
        raise UsageError("a second argument is only taken after 'report'")
    request = BenchmarkRequest(
        dataset=dataset, out=out, scenarios=tuple(scenario.replace(" ", "").split(",")),
        classes=None if classes is None else parse_ints(classes, "--classes"), seeds=seeds,
        levels=None if levels is None else _floats(levels, "--levels"),
        methods=None if methods is None else tuple(m for m in methods.replace(" ", "").split(",") if m),
        preset=preset, epochs=epochs, pretrain_epochs=pretrain_epochs, nus=_floats(nus, "--nus"),
        preprocessing=preprocessing, arch=arch, decoder=decoder, data_root=data_root, download=download, device=device, stack=stack,
    )  # fmt: skip
    with console.status("loading data and timing a few training steps for the estimate"):
        plan = plan_benchmark(request)
    render_plan(plan)
    if plan.is_long and plan.todo and not yes:
        _confirm_long(plan, cheaper_plans(plan))
    if plan.todo:
        with run_progress(len(plan.todo)) as (progress, task):
            on_start = lambda group: progress.update(task, status=describe_runs(group))  # noqa: E731
            on_assigned = lambda n: progress.update(task, total=n)  # noqa: E731
            for _ in run_plan(plan, on_start=on_start, on_assigned=on_assigned):
                progress.advance(task)
    if ranks().is_main:
        _report(out)


def _confirm_long(plan, cheaper: list[tuple[str, float | None]]) -> None:
    """Say what cheaper plans would cost; ask (default no), or refuse without a terminal."""
    from ssd_cli.core.ranks import ranks

    lines = [f"  {what}: {'about ' + duration(t) if t is not None else 'not estimated here'}" for what, t in cheaper]
    warn(f"this plan is estimated at {duration(plan.estimate_seconds)} on {plan.device}; cheaper plans:\n" + "\n".join(lines))
    if not interactive() or ranks().active:
        raise SsdError("not started: a plan of over an hour needs --yes when there is no terminal to ask (or under torchrun)", ExitCode.USAGE)
    if not typer.confirm("Start it anyway?", default=False):
        console.print("not started")
        raise typer.Exit(ExitCode.OK)


def _report(out: Path) -> None:
    from ssd_cli.experiments.results import results_files
    from ssd_cli.experiments.report import read_results, summarize, write_summary

    files = results_files(out) if out.is_dir() else []
    if not files:
        raise SsdError(f"no results in '{out}' (expected {out / 'results.jsonl'})", ExitCode.BAD_INPUT)
    records, skipped = [], 0
    for path in files:  # results.jsonl, and per-rank files of a distributed run not merged yet
        results = read_results(path)
        records += results.records
        skipped += results.skipped_lines
    if skipped:
        warn(f"{out}: skipped {skipped} unreadable line(s) (a run cut short is redone on resume)")
    summary = summarize(records)
    render_summary(summary)
    written = write_summary(summary, out)
    console.print("wrote " + ", ".join(str(p) for p in written))
