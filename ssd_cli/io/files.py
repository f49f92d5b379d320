"""Writing output files safely: never over an existing file unasked, never half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ssd_cli.errors import OutputExistsError, UsageError


def check_writable(path: Path, force: bool) -> None:
    """Refuse to overwrite unless asked; called before any long work starts."""
    if path.exists() and not force:
        raise OutputExistsError(f"'{path}' already exists; pass --force to overwrite it")
    if path.exists() and path.is_dir():
        raise OutputExistsError(f"'{path}' is a folder, not a file")
    if not path.parent.exists():
        raise UsageError(f"cannot write '{path}': folder '{path.parent}' does not exist")


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write all bytes or nothing: a stopped write never leaves a half file at `path`."""
    check_writable(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; restore it at once
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str, force: bool) -> None:
    write_atomic(path, text.encode("utf-8"), force)
