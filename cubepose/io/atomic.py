"""Atomic local writes: a temporary file in the same folder, fsync, then rename."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from cubepose.io.temporary import temporary_beside


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", durable: bool = True) -> Iterator[IO]:
    """Write to a temporary sibling of ``path`` and rename it over ``path`` on success.

    A crash or exception leaves any previous ``path`` untouched; a partial file is removed at once, or, when the
    process is killed, by the next ``remove_orphans`` there. The new file gets the permissions of a plain open();
    a text mode writes UTF-8 whatever the locale (a container's C locale would refuse an accented path).
    ``durable=False`` skips the fsync: still safe against a killed process, not against power loss; for files that
    can be made again (rendered frames), where fsync dominates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with temporary_beside(path) as temporary:
        with open(temporary, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temporary, path)


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = True) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    with atomic_open(path, "w", durable) as handle:
        handle.write(text)
