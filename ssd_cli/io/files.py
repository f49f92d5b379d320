"""Writing output files safely: never over an existing file unasked, never half-written.

A file appears whole or not at all: it is written to a temporary file in the same folder, flushed,
then moved into place. Without --force the move is an exclusive create (a hard link, which fails if
the name exists), so of two processes writing the same new file exactly one succeeds and the other
gets exit code 5, instead of both reporting success. Problems of the place (no such folder, no
permission, read-only, disk full) are CannotWriteError (exit code 7), found before long work where
they can be (`check_writable` creates and removes a probe file).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from ssd_cli.errors import CannotWriteError, OutputExistsError, UsageError

# OSError numbers that describe the place being written to, not a bug of ssd.
PLACE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENAMETOOLONG}


def check_writable(path: Path, force: bool) -> None:
    """Refuse to overwrite unless asked, and make sure the file can be created there; called
    before any long work starts, so a training run never ends on an unwritable output."""
    _refuse_existing(path, force)
    if not path.parent.is_dir():
        raise UsageError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    os.close(fd)
    os.unlink(probe)


def _refuse_existing(path: Path, force: bool) -> None:
    if path.is_dir():
        raise OutputExistsError(f"'{path}' is a folder, not a file")
    if path.exists() and not force:
        raise OutputExistsError(f"'{path}' already exists; pass --force to overwrite it")


def cannot_write(path: Path, exc: OSError) -> CannotWriteError:
    return CannotWriteError(f"cannot write '{path}': {exc.strerror or exc}")


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write all bytes or nothing: a stopped or failed write never leaves a half file at `path`."""
    _refuse_existing(path, force)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except FileNotFoundError:
        raise UsageError(f"cannot write '{path}': folder '{path.parent}' does not exist") from None
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        if force:
            os.replace(tmp, path)
        else:
            _create_exclusive(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            raise OutputExistsError(f"'{path}' was created by someone else meanwhile; pass --force to overwrite it") from None
        if exc.errno in PLACE_ERRORS:
            raise cannot_write(path, exc) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_exclusive(tmp: str, path: Path) -> None:
    """Move tmp to path only if path does not exist, atomically: link (fails with FileExistsError
    if the name is taken), then drop the temporary name. Where hard links are not supported, an
    O_EXCL create reserves the name first."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # raises FileExistsError if taken
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; restore it at once
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str, force: bool) -> None:
    write_atomic(path, text.encode("utf-8"), force)


def printable(path: Path | str) -> str:
    """A path as valid UTF-8 text. A file name that is not valid UTF-8 (Python keeps its bytes as
    surrogate escapes) gets \\xNN escapes instead, so no output and no terminal fails on it."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A text cell a spreadsheet will not run: one starting like a formula (=, +, -, @) gets a
    leading apostrophe, the usual defence against CSV formula injection. Numbers are not text."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value
