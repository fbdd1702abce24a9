"""The one cache-sync engine of gs:// and s3://: an object, or every object under a prefix, into the download cache.

Each store gives an adapter (:class:`Store`). Here: reuse files whose sidecar names the current version, fetch to
partial files renamed into place, remove what left the bucket, mark a prefix complete, fall back offline to one.
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cubepose.errors import StorageError, StorageUnreachableError
from cubepose.io.atomic import atomic_write_text
from cubepose.io.temporary import remove_orphans, remove_orphans_under, temporary_beside
from cubepose.storage import cache


@dataclass(frozen=True)
class Remote:
    """One version of one object, as its store describes it: what the sidecar records and what a fetch needs."""

    name: str  # the object's name (key) in its bucket
    url: str  # the object's own URL, named in its sidecar and in its errors
    size: int | None
    version: dict[str, Any]  # the sidecar fields naming this version: {"generation": ...} or {"etag": ...}
    handle: Any = None  # the store's own description of the object (a GCS blob), for its fetch


@dataclass(frozen=True)
class Store(ABC):
    """One bucket's adapter: ``head`` (one object's current version) and ``listing`` (a prefix's objects, without folder
    placeholders) raise StorageErrors (StorageUnreachableError: no answer); ``errors`` translates the store's errors
    and the cache's OSErrors; ``fetch`` writes the version a Remote names. Logs and threads are named by its module."""

    client: Any
    bucket: str
    marker: str  # file name of the completeness marker in a synced prefix's directory
    list_command: str  # the shell command that lists a prefix, for the "no objects" hint

    @abstractmethod
    def head(self, url: str, name: str) -> Remote: ...
    @abstractmethod
    def listing(self, url: str, prefix: str) -> list[Remote]: ...
    @abstractmethod
    def errors(self, url: str) -> AbstractContextManager[None]: ...
    @abstractmethod
    def fetch(self, remote: Remote, out: IO[bytes]) -> None: ...


def cache_location(url: str, root: Path, path: str, marker: str, url_forms: str) -> Path:
    """Where ``url`` (object or prefix ``path`` of the bucket cached in ``root``) is kept; refuses a bare bucket."""
    if url.endswith("/"):
        return cache.cache_target(root, path.rstrip("/"), url, reserved=(marker,)) if path else root
    if not path:
        raise StorageError(f"{url!r} names no object; for the whole bucket use {url}/, else {url_forms}")
    return cache.cache_target(root, path, url, reserved=(marker,))


def download(store: Store, url: str, path: str, local: Path, workers: int) -> Path:
    """Bring ``local`` (from cache_location) up to date with the object or prefix (``/`` at the end) ``url``."""
    if url.endswith("/"):
        return _download_prefix(store, url, path, local, workers)
    return _download_object(store, url, path, local)


def _download_object(store: Store, url: str, name: str, target: Path) -> Path:
    """Fetch one object unless the cached copy is current; fall back to the cache when the store is unreachable."""
    remove_orphans(target.parent, target.name)
    try:
        remote = store.head(url, name)
    except StorageUnreachableError as err:
        return cache.offline_copy(err, target, cache.read_sidecar(target, complete=True) is not None)
    if is_current(target, remote):
        _logger(store).info("%s: cached copy %s is up to date", url, target)
        return target
    with cache.progress(url, remote.size or 0) as bar:
        _fetch(store, remote, target, bar)
    return target


def _download_prefix(store: Store, url: str, prefix: str, directory: Path, workers: int) -> Path:
    """Sync every object under ``prefix`` into ``directory``; objects no longer in the bucket are removed."""
    marker = directory / store.marker
    remove_orphans_under(directory)
    try:
        remotes = store.listing(url, prefix)
    except StorageUnreachableError as err:
        return cache.offline_copy(err, directory, marker.is_file())
    if not remotes:
        raise StorageError(
            f"no objects under {url}: check the bucket and prefix (list them: {store.list_command} {url})"
        )
    reserved = (store.marker,)
    targets = {r.name: cache.cache_target(directory, r.name[len(prefix) :], url, reserved=reserved) for r in remotes}
    todo = [(remote, targets[remote.name]) for remote in remotes if not is_current(targets[remote.name], remote)]
    cache.prepare_sync(directory, set(targets.values()), bool(todo), marker, url)
    cached = len(remotes) - len(todo)
    _logger(store).info("%s: %d of %d objects cached, downloading %d", url, cached, len(remotes), len(todo))
    _fetch_all(store, todo, url, workers)
    atomic_write_text(marker, json.dumps({"url": url, "objects": len(remotes)}) + "\n")
    return directory


def _fetch_all(store: Store, todo: list[tuple[Remote, Path]], url: str, workers: int) -> None:
    """Download ``(remote, target)`` pairs on threads sharing the store's client; the first failure cancels the rest."""
    if not todo:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=f"{_logger(store).name}-download")
    try:
        with cache.progress(url, sum(remote.size or 0 for remote, _ in todo)) as bar:
            futures = [pool.submit(_fetch, store, remote, target, bar) for remote, target in todo]
            for future in as_completed(futures):
                future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _fetch(store: Store, remote: Remote, target: Path, bar: cache.Progress) -> None:
    """Download ``remote`` to a partial sibling of ``target``, rename it into place, then write its sidecar."""
    record = {"object": remote.url, **remote.version, "size": remote.size}
    with store.errors(remote.url):
        target.parent.mkdir(parents=True, exist_ok=True)
        with temporary_beside(target) as partial:
            with open(partial, "wb") as handle:
                store.fetch(remote, cache.ProgressWriter(handle, bar))
                handle.flush()
                os.fsync(handle.fileno())
            record["local_size"] = partial.stat().st_size
            cache.sidecar(target).unlink(missing_ok=True)  # never a record of the old bytes beside the new ones
            os.replace(partial, target)
            cache.write_sidecar(target, record)


def is_current(target: Path, remote: Remote) -> bool:
    """Whether the cached ``target`` is a complete copy of the version ``remote`` describes."""
    record = cache.read_sidecar(target, complete=True)
    return record is not None and all(record.get(k) == v for k, v in {**remote.version, "size": remote.size}.items())


def _logger(store: Store) -> logging.Logger:
    """The logger of the store's module: log lines keep naming gcs or s3, as before the engine was shared."""
    return logging.getLogger(type(store).__module__)
