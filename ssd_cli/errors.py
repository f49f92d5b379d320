"""Errors the CLI turns into one-line messages and documented exit codes."""

from __future__ import annotations

from enum import IntEnum


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
