"""Atomic local writes: a temporary file in the same folder, fsync, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The permissions open() would give a new file: 0666 minus the umask."""
    return 0o666 & ~_umask()


def default_dir_mode() -> int:
    """The permissions mkdir() would give a new folder: 0777 minus the umask."""
    return 0o777 & ~_umask()


def temporary_sibling(path: Path) -> tuple[int, str]:
    """A new hidden temporary file beside ``path`` (fd, name) with the permissions of a plain open().

    mkstemp makes files 0600; renamed into place they would hide datasets, checkpoints and
    reports from the user's group, so the mode is reset to 0666 minus the umask.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, default_file_mode())
    return fd, name


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", durable: bool = True) -> Iterator[IO]:
    """Write to a temporary sibling of ``path`` and rename it over ``path`` on success.

    A crash or exception leaves any previous ``path`` untouched and no partial file.
    ``durable=False`` skips the fsync: still safe against a killed process, not against
    power loss; for files that can be made again (rendered frames), where fsync dominates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_sibling(path)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = True) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    with atomic_open(path, "w", durable) as handle:
        handle.write(text)
