"""The download cache's bookkeeping, shared by gs://, s3:// and http(s):// downloads.

A download goes to ``.<name>.partial-<pid>-<random>`` beside its target and is renamed into
place when complete; then a sidecar ``.<name>.source.json`` records where it came from and the
bytes written, so a file is reused only while it is complete and its source is unchanged.
Partial files of processes that are gone are removed on the next download.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tqdm import tqdm

from cubepose.errors import StorageError

logger = logging.getLogger(__name__)

PARTIAL_MARK = ".partial-"
SIDECAR_SUFFIX = ".source.json"


def partial_path(target: Path) -> Path:
    """A fresh temporary name beside ``target`` that names this process (so orphans can be found)."""
    return target.with_name(f".{target.name}{PARTIAL_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def cache_target(root: Path, name: str, url: str, reserved: tuple[str, ...] = ()) -> Path:
    """Where object ``name`` of ``url`` is cached under ``root``; names that would escape ``root`` or clash with the
    cache's bookkeeping (partial files, sidecars, the ``reserved`` marker names) are refused."""
    parts = name.split("/")
    last = parts[-1]
    if any(part in ("", ".", "..") for part in parts) or "\\" in name or "\0" in name:
        raise StorageError(f"{url}: object name {name!r} cannot be stored as a local file (empty, '.' or '..' parts)")
    if last in reserved or (last.startswith(".") and (PARTIAL_MARK in last or last.endswith(SIDECAR_SUFFIX))):
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
            if name.startswith(".") and name.endswith(SIDECAR_SUFFIX) and PARTIAL_MARK not in name:
                found.add(Path(parent) / name[1 : -len(SIDECAR_SUFFIX)])
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


def remove_stale_partials(directory: Path, name: str) -> None:
    """Delete ``.<name>.partial-<pid>-*`` files left by processes that are gone (interrupted downloads)."""
    if directory.is_dir():
        for path in directory.iterdir():
            if path.name.startswith(f".{name}{PARTIAL_MARK}"):
                remove_if_orphaned(path)


def remove_stale_partials_tree(directory: Path) -> None:
    """Delete orphaned partial downloads anywhere under ``directory``."""
    for parent, _, names in os.walk(directory):
        for name in names:
            if name.startswith(".") and PARTIAL_MARK in name:
                remove_if_orphaned(Path(parent) / name)


def remove_if_orphaned(partial: Path) -> None:
    """Delete a partial file unless the process named in it (maybe this one) is still running and writing it."""
    pid_text = partial.name.rpartition(PARTIAL_MARK)[2].split("-")[0]
    if pid_text.isdigit() and pid_alive(int(pid_text)):
        return
    logger.debug("removing interrupted download %s", partial)
    partial.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        pass
    return True


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
