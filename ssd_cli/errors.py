"""Errors the CLI turns into one-line messages and documented exit codes."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import IntEnum
from typing import Any, TypeVar


class ExitCode(IntEnum):
    """Process exit codes; documented in README.md so scripts can branch on them."""

    OK = 0
    FAILURE = 1  # an unexpected internal error
    USAGE = 2  # bad option or argument (also Typer's own code)
    BAD_INPUT = 3  # missing/empty folder, no readable image, bad labels file, missing dataset
    BAD_MODEL = 4  # not an ssd file, unknown format version, incompatible model
    OUTPUT_EXISTS = 5  # output file exists and --force was not given, or another ssd is writing it
    DIVERGED = 6  # training stopped: the loss or the weights became NaN or infinite
    CANNOT_WRITE = 7  # an output cannot be written: no permission, read-only, disk full
    INTERRUPTED = 130  # stopped by Ctrl-C (finished work was kept)


class SsdError(Exception):
    """An error caused by the user's input, reported without a traceback."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(SsdError):
    exit_code = ExitCode.BAD_INPUT


class ModelFileError(SsdError):
    exit_code = ExitCode.BAD_MODEL


class OutputExistsError(SsdError):
    exit_code = ExitCode.OUTPUT_EXISTS


class UsageError(SsdError):
    exit_code = ExitCode.USAGE


class TrainingDiverged(SsdError):
    exit_code = ExitCode.DIVERGED


class CannotWriteError(SsdError):
    exit_code = ExitCode.CANNOT_WRITE


# Messages name options as the `ssd` command spells them (--top-k, --force); a caller of the Python
# API passed arguments (top_k, force=True), so its errors are respelled, unless the command is the caller.
_IN_COMMAND: ContextVar[bool] = ContextVar("ssd_in_command", default=False)
_OPTION = re.compile(r"(?<![\w/.-])(?<!ssd )--([a-z][a-z0-9-]*)(?: (-?[0-9][\w.]*))?")
_F = TypeVar("_F", bound=Callable[..., Any])


@contextmanager
def command_spelling() -> Iterator[None]:
    """Within an `ssd` command: errors keep naming --options."""
    token = _IN_COMMAND.set(True)
    try:
        yield
    finally:
        _IN_COMMAND.reset(token)


def python_spelling(message: str) -> str:
    """--top-k as top_k, --force as force=True, --patch-size 0 as patch_size=0; `ssd --option`,
    which has no Python argument, stays."""

    def respell(m: re.Match) -> str:
        name = m.group(1).replace("-", "_")
        if name == "force":
            return "force=True"
        return f"{name}={m.group(2)}" if m.group(2) else name

    return _OPTION.sub(respell, message)


def python_names(fn: _F) -> _F:
    """For the public API's methods: an SsdError names the Python arguments, not the options."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SsdError as exc:
            if not _IN_COMMAND.get():
                exc.args = (python_spelling(str(exc)),)
            raise

    return wrapper  # type: ignore[return-value]
