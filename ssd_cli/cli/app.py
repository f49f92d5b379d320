"""The Typer app of `ssd`: its global options, and the error handling that turns every expected
failure into one line and a documented exit code. The commands (cli/train.py, ...) register on it."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from ssd_cli import __version__
from ssd_cli.data.limits import DEFAULT_MAX_PIXELS, set_max_pixels
from ssd_cli.errors import ExitCode, SsdError, command_spelling
from ssd_cli.io.files import PLACE_ERRORS
from ssd_cli.cli.render import console, error, quiet_unless_main

# Click's exceptions, from wherever this Typer takes Click (recent Typers carry their own copy).
_click_errors = importlib.import_module(typer.BadParameter.__module__)


class OneLineErrors(TyperGroup):
    """Usage errors Click finds itself (an unknown option, a value of the wrong type, a missing
    argument) as one `error:` line with the --help hint and exit code 2, as every other error is:
    Click's own are a boxed block of several lines."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        args = sys.argv[1:] if args is None else list(args)
        if not standalone_mode or not args:  # `ssd` alone shows the help, as Click does
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=standalone_mode, **extra)
        try:  # not standalone: Click raises its errors here instead of printing them, and returns exit codes
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except _click_errors.UsageError as exc:
            error(usage_line(exc))
            code = ExitCode.USAGE
        except typer.Abort:  # a question answered with Ctrl-C or the end of the input
            error("interrupted: nothing was started")
            code = ExitCode.INTERRUPTED
        sys.exit(code if isinstance(code, int) else ExitCode.OK)


def usage_line(exc: Exception) -> str:
    """Click's message on one line, lower-cased as ours, with where to read the command's options."""
    message = " ".join(exc.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
    option = getattr(exc, "option_name", None)
    if isinstance(exc, _click_errors.NoSuchOption) and option and not option.startswith("--"):
        message += "; write a file name that starts with '-' as ./-name.png, or after '--'"
    ctx = getattr(exc, "ctx", None)
    return f"{message[:1].lower()}{message[1:]} (see '{ctx.command_path if ctx else 'ssd'} --help')"


app = typer.Typer(
    name="ssd",
    cls=OneLineErrors,
    help=(
        "Find anomalies in folders of images with Semi-Supervised Deep SVDD (Ruff et al.). "
        "Train on unlabeled images (plus a few labeled normal or anomalous ones), then score new images "
        "by their distance to the center of the learned hypersphere."
    ),
    epilog="Exit codes: 0 ok, 1 internal error, 2 bad option, 3 bad input data, 4 bad model file, 5 output exists (use --force) or in use, 6 training diverged, 7 cannot write an output, 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


MAX_THREADS = 256  # far beyond any CPU this runs on; OpenMP crashes on absurd counts (100000 segfaulted)


def _version(value: bool) -> None:
    if value:
        console.print(f"ssd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    max_image_pixels: Annotated[
        int,
        typer.Option("--max-image-pixels", envvar="SSD_MAX_IMAGE_PIXELS", help="Skip (with a warning) images whose header declares more pixels than this: a small file can declare a size whose decode exhausts memory."),
    ] = DEFAULT_MAX_PIXELS,
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", help="CPU threads for torch (default: torch's, one per core). On a machine busy with other work, 1 can be several times faster."),
    ] = None,
) -> None:
    """Semi-Supervised Deep SVDD anomaly detection."""
    quiet_unless_main()
    if max_image_pixels < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--max-image-pixels")
    set_max_pixels(max_image_pixels)
    if threads is not None:
        if not 1 <= threads <= MAX_THREADS:
            raise typer.BadParameter(f"must be between 1 and {MAX_THREADS}", param_hint="--threads")
        import torch

        from ssd_cli.core import distributed

        torch.set_num_threads(threads)
        distributed.keep_threads()


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one red line and a documented exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with command_spelling():  # messages name --options here; the Python API respells them
                return fn(*args, **kwargs)
        except SsdError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            resume = "; every finished run is kept: rerun the same command to resume" if fn.__name__ == "benchmark" else ""
            error(f"interrupted: no half-written file was left behind{resume}")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno in PLACE_ERRORS:  # the file system, not ssd: disk full, no permission, read-only
                where = f": '{exc.filename}'" if exc.filename else ""
                error(f"{exc.strerror or exc}{where}")
                raise typer.Exit(ExitCode.CANNOT_WRITE) from None
            if os.environ.get("SSD_DEBUG"):  # a bug, not bad input: still one line unless asked for the traceback
                raise
            error(f"internal error: {type(exc).__name__}: {exc} (set SSD_DEBUG=1 to see the traceback)")
            raise typer.Exit(ExitCode.FAILURE) from None

    return wrapper


def run() -> None:
    """Console-script entry point."""
    app()
