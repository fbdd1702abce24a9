"""http(s):// downloads into the local cache: atomic, resumable by revalidation, usable offline.

Cache layout: ``<cache_dir>/http/<sha256(url)[:16]>/<file name>``. A cached copy is revalidated
with ``If-None-Match`` / ``If-Modified-Since``; a 304 keeps it. A body shorter than its
``Content-Length`` is never renamed into place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.parse
from pathlib import Path

import requests

from cubepose.errors import StorageError, StorageUnreachableError
from cubepose.io.temporary import remove_orphans, temporary_beside
from cubepose.storage.cache import progress, read_sidecar, sidecar, write_sidecar

logger = logging.getLogger(__name__)

CHUNK = 1 << 20


def cache_path(url: str, cache_dir: str | os.PathLike) -> Path:
    """Where ``url`` is cached: one folder per URL, keeping the URL's file name."""
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    return Path(cache_dir) / "http" / hashlib.sha256(url.encode()).hexdigest()[:16] / name


def download(url: str, cache_dir: str | os.PathLike, *, timeout: float = 30.0) -> Path:
    """Download ``url`` into the cache unless the cached copy is still current; return the local file."""
    target = cache_path(url, cache_dir)
    remove_orphans(target.parent, target.name)
    cached = read_sidecar(target, complete=True)
    headers = {}
    if cached and cached.get("etag"):
        headers["If-None-Match"] = cached["etag"]
    if cached and cached.get("last_modified"):
        headers["If-Modified-Since"] = cached["last_modified"]
    try:
        response = requests.get(url, headers=headers, stream=True, timeout=timeout)
    except (requests.ConnectionError, requests.Timeout) as err:
        if cached:
            logger.warning("cannot reach %s (%s); using the cached copy %s", url, type(err).__name__, target)
            return target
        raise StorageUnreachableError(
            f"cannot reach {url} ({type(err).__name__}); check the URL and the network connection"
        ) from None
    except requests.RequestException as err:
        raise StorageError(f"{url}: request failed ({err}); check the URL") from None
    with response:
        if response.status_code == 304 and cached:
            logger.info("%s: cached copy %s is up to date", url, target)
            return target
        if response.status_code != 200:
            raise StorageError(
                f"{url}: HTTP {response.status_code} {response.reason}; check the URL and that the server "
                "shares the file with this machine"
            )
        _save_body(response, url, target)
    return target


def _save_body(response: requests.Response, url: str, target: Path) -> None:
    """Stream the body to a partial file; rename it into place only when it is complete."""
    expected = int(response.headers.get("Content-Length") or -1)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with temporary_beside(target) as partial:
        with open(partial, "wb") as handle, progress(url, max(expected, 0)) as bar:
            try:
                for chunk in response.iter_content(CHUNK):
                    handle.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as err:
                raise _broke_off(url, written, expected, type(err).__name__) from None
            handle.flush()
            os.fsync(handle.fileno())
        if 0 <= expected != written:
            raise _broke_off(url, written, expected, "connection closed")
        sidecar(target).unlink(missing_ok=True)  # never a record of the old bytes beside the new ones
        os.replace(partial, target)
        record = {"url": url, "etag": response.headers.get("ETag"), "local_size": written}
        record["last_modified"] = response.headers.get("Last-Modified")
        write_sidecar(target, record)


def _broke_off(url: str, written: int, expected: int, reason: str) -> StorageError:
    total = f" of {expected}" if expected >= 0 else ""
    return StorageError(f"download of {url} broke off ({reason}) with {written}{total} bytes saved; run again")
