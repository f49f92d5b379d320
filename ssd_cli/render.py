"""Terminal output for the CLI: progress bars, warnings and tables (the engine never prints)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .images import Skipped
from .training import EpochCallback, EpochInfo

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
def epoch_progress(description: str, epochs: int) -> Iterator[EpochCallback]:
    """A progress bar over epochs showing the loss; yields the engine's epoch callback."""
    with new_progress() as progress:
        task = progress.add_task(description, total=epochs, status="")

        def on_epoch(info: EpochInfo) -> None:
            progress.update(task, completed=info.epoch, status=f"loss {info.loss:.4g}  lr {info.lr:.0e}")

        yield on_epoch
