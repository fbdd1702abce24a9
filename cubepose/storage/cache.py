"""The download cache's bookkeeping, shared by gs://, s3:// and http(s):// downloads.

A download goes to a temporary file beside its target (``cubepose.io.temporary``) and is renamed
into place when complete; then a sidecar ``.<name>.source.json`` records where it came from and the
bytes written, so a file is reused only while it is complete and its source is unchanged.
Temporaries of processes that are gone are removed on the next download (``remove_orphans``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tqdm import tqdm

from cubepose.errors import StorageError
from cubepose.io.temporary import is_temporary

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".source.json"


def cache_target(root: Path, name: str, url: str, reserved: tuple[str, ...] = ()) -> Path:
    """Where object ``name`` of ``url`` is cached under ``root``; names that would escape ``root`` or clash with the
    cache's bookkeeping (temporary files, sidecars, the ``reserved`` marker names) are refused."""
    parts = name.split("/")
    last = parts[-1]
    if any(part in ("", ".", "..") for part in parts) or "\\" in name or "\0" in name:
        raise StorageError(f"{url}: object name {name!r} cannot be stored as a local file (empty, '.' or '..' parts)")
    if last in reserved or is_temporary(last) or (last.startswith(".") and last.endswith(SIDECAR_SUFFIX)):
        raise StorageError(f"{url}: object name {name!r} clashes with the cache's bookkeeping files; rename it")
    return root.joinpath(*parts)


def write_sidecar(target: Path, record: dict) -> None:
    """Record ``target``'s source and length (after ``target`` is in place)."""
    from cubepose.io.atomic import atomic_write_text

    atomic_write_text(sidecar(target), json.dumps(record) + "\n")


def read_sidecar(target: Path, complete: bool = False) -> dict | None:
    """The sidecar record of ``target``; with ``complete``, None unless the file has the recorded length."""
    try:
        record = json.loads(sidecar(target).read_text())
        if complete and target.stat().st_size != record["local_size"]:
            return None
        return record
    except (OSError, ValueError, KeyError, TypeError):
        return None


def sidecar(target: Path) -> Path:
    """Where the generation record of a cached file lives."""
    return target.with_name(f".{target.name}{SIDECAR_SUFFIX}")


def cached_files(directory: Path) -> set[Path]:
    """Files under ``directory`` that a download wrote (those with a sidecar)."""
    found = set()
    for parent, _, names in os.walk(directory):
        for name in names:
            target = name[1 : -len(SIDECAR_SUFFIX)]
            if name.startswith(".") and name.endswith(SIDECAR_SUFFIX) and not is_temporary(target):
                found.add(Path(parent) / target)
    return found


def offline_copy(err: Exception, copy: Path, complete: bool) -> Path:
    """The cached ``copy`` when the store cannot be reached (``err``) and the copy is ``complete``; else ``err``."""
    if not complete:
        raise err
    logger.warning("%s; using the cached copy %s", err, copy)
    return copy


def prepare_sync(directory: Path, keep: set[Path], outdated: bool, marker: Path, url: str) -> None:
    """Before a prefix sync into ``directory``: drop its completeness ``marker`` when anything will change
    (``outdated`` or files to remove), and remove the cached files not in ``keep`` (gone from the bucket)."""
    stale = cached_files(directory) - keep
    if outdated or stale:
        marker.unlink(missing_ok=True)
    for path in stale:
        logger.info("%s: removing %s, no longer in the bucket", url, path)
        sidecar(path).unlink(missing_ok=True)
        path.unlink(missing_ok=True)


class Progress:
    """A byte-counting tqdm bar that several download threads can update."""

    def __init__(self, bar: tqdm) -> None:
        self._bar = bar
        self._lock = threading.Lock()

    def update(self, count: int) -> None:
        with self._lock:
            self._bar.update(count)


@contextmanager
def progress(url: str, total: int) -> Iterator[Progress]:
    """A tqdm bar over ``total`` bytes for ``url`` (silent when stderr is not a terminal)."""
    with tqdm(total=total, desc=url, unit="B", unit_scale=True, unit_divisor=1024, disable=None) as bar:
        yield Progress(bar)


class ProgressWriter:
    """Binary file wrapper that reports each write to a progress bar."""

    def __init__(self, handle: IO[bytes], progress: Progress) -> None:
        self._handle = handle
        self._progress = progress

    def write(self, data: bytes) -> int:
        written = self._handle.write(data)
        self._progress.update(len(data))
        return written

    def __getattr__(self, name: str):
        return getattr(self._handle, name)
