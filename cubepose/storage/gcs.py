"""Google Cloud Storage (``gs://`` URLs): downloads into a local cache, atomic and reusable; uploads.

Cache layout: ``<cache_dir>/gcs/<bucket>/<object name>``. Beside every downloaded file ``name``
lies a sidecar ``.<name>.source.json`` (cache.py) recording the object's ``generation`` and
``size`` and the bytes written; a file is reused only while its sidecar matches the object's
current generation and the file's length. A prefix download also writes ``.gcs-prefix.json``
in its directory once every object under the prefix is complete, so that an offline run can
tell a complete copy from a half-synced one.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

import google_crc32c
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud import storage
from google.cloud.storage import transfer_manager
from google.cloud.storage.exceptions import DataCorruption
from google.cloud.storage.retry import DEFAULT_RETRY

from cubepose.errors import StorageError, StorageUnreachableError
from cubepose.io.atomic import atomic_write_text
from cubepose.storage.backends import is_gcs_url
from cubepose.storage.cache import (
    Progress,
    ProgressWriter,
    cache_target,
    offline_copy,
    partial_path,
    prepare_sync,
    progress,
    read_sidecar,
    remove_stale_partials,
    remove_stale_partials_tree,
    sidecar,
    write_sidecar,
)

logger = logging.getLogger(__name__)

URL_FORMS = "gs://bucket/path/file.zip (one object) or gs://bucket/prefix/ (every object under a prefix)"
CREDENTIALS_HELP = (
    "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS=/path/key.json "
    "(a service-account key with access to the bucket)"
)
DEFAULT_WORKERS = 8
CHECKSUM_CHUNK = 1 << 20
PREFIX_MARKER = ".gcs-prefix.json"

# Errors meaning "GCS did not answer" (after the retries): a complete cached copy may then be used instead.
_UNREACHABLE = (
    api_exceptions.RetryError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    auth_exceptions.TransportError,
    ConnectionError,
)


def parse_url(url: str) -> tuple[str, str]:
    """Split ``gs://bucket/path`` into ``(bucket, path)``; ``path`` keeps a trailing ``/`` of a prefix."""
    if not is_gcs_url(url):
        raise StorageError(f"{url!r} is not a gs:// URL; use {URL_FORMS}")
    bucket, _, path = url[len("gs://") :].partition("/")
    if not bucket:
        raise StorageError(f"{url!r} names no bucket; use {URL_FORMS}")
    return bucket, path


def gcs_client() -> storage.Client:
    """A storage client: application-default credentials if any, else anonymous (enough for public buckets).

    With STORAGE_EMULATOR_HOST set, the library itself uses anonymous credentials and asks for none.
    """
    try:
        # project=None: downloads need no project, and credentials without one must not fail here.
        return storage.Client(project=None)
    except auth_exceptions.DefaultCredentialsError:
        logger.info("no Google application-default credentials found; using anonymous access (public buckets only)")
        return storage.Client.create_anonymous_client()


def download(
    url: str,
    cache_dir: str | os.PathLike,
    *,
    workers: int = DEFAULT_WORKERS,
    retry_timeout: float = 60.0,
) -> Path:
    """Download an object (``gs://b/file.zip``) or every object under a prefix (``gs://b/dir/``) into the cache.

    Returns the cached file or directory; unchanged objects are reused, changed ones downloaded again.
    """
    bucket, path = parse_url(url)
    root = Path(cache_dir) / "gcs" / bucket
    retry = DEFAULT_RETRY.with_timeout(retry_timeout)
    if url.endswith("/"):
        directory = _cache_target(root, path.rstrip("/"), url) if path else root
        with gcs_client() as client:
            return _download_prefix(client, url, bucket, path, directory, workers, retry)
    if not path:
        raise StorageError(f"{url!r} names no object; for the whole bucket use gs://{bucket}/, else {URL_FORMS}")
    target = _cache_target(root, path, url)
    with gcs_client() as client:
        return _download_object(client, url, bucket, path, target, retry)


def upload_file(local: str | os.PathLike, url: str, *, timeout: float = 300.0) -> int:
    """Upload one local file to ``gs://bucket/name`` in a single attempt (callers retry); return its generation.

    Not through the cache: the object is written as is, replacing any previous generation.
    """
    bucket, name = parse_url(url)
    if not name or name.endswith("/"):
        raise StorageError(f"{url!r} names no object; upload to gs://bucket/path/file")
    with gcs_client() as client, gcs_errors(url, access="write"):
        blob = client.bucket(bucket).blob(name)
        blob.upload_from_filename(str(local), retry=None, timeout=timeout)
        return blob.generation


def upload_folder(local: Path, names: list[str], url: str) -> int:
    """Upload the files under ``local`` (relative ``names``) whose CRC32C differs from the object of the same
    name under the prefix ``url`` (one listing, threads); return how many were sent."""
    bucket_name, prefix = parse_url(url.rstrip("/") + "/")
    with gcs_client() as client, gcs_errors(url, access="write"):
        remote = {
            blob.name[len(prefix) :]: blob.crc32c for blob in client.list_blobs(bucket_name, prefix=prefix or None)
        }
        todo = [name for name in names if name not in remote or remote[name] != crc32c_base64(local / name)]
        logger.info(
            "%s: %d of %d files already there, uploading %d", url, len(names) - len(todo), len(names), len(todo)
        )
        if not todo:
            return 0
        results = transfer_manager.upload_many_from_filenames(
            client.bucket(bucket_name),
            todo,
            source_directory=str(local),
            blob_name_prefix=prefix,
            upload_kwargs={"retry": DEFAULT_RETRY},
            max_workers=DEFAULT_WORKERS,
            worker_type=transfer_manager.THREAD,
            raise_exception=True,
        )
    failures = [name for name, result in zip(todo, results, strict=True) if isinstance(result, Exception)]
    if failures:
        raise StorageError(f"uploading {len(failures)} files to {url} failed, first {failures[0]}")
    return len(todo)


def crc32c_base64(path: Path) -> str:
    """The file's CRC32C as GCS reports it: base64 of the big-endian 32-bit checksum."""
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHECKSUM_CHUNK), b""):
            checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode()


def exists(url: str) -> bool:
    """Whether the object ``url`` exists."""
    bucket, name = parse_url(url)
    with gcs_client() as client, gcs_errors(url):
        return client.bucket(bucket).get_blob(name) is not None


def copy_command(local: str | os.PathLike, url: str) -> str:
    """The shell command that uploads ``local`` to ``url`` by hand."""
    return f"gcloud storage cp {local} {url}"


def _download_object(client: storage.Client, url: str, bucket: str, name: str, target: Path, retry) -> Path:
    """Fetch one object unless the cached copy is current; fall back to the cache when GCS is unreachable."""
    remove_stale_partials(target.parent, target.name)
    try:
        with gcs_errors(url):
            blob = client.bucket(bucket).get_blob(name, retry=retry)
    except StorageUnreachableError as err:
        return offline_copy(err, target, read_sidecar(target, complete=True) is not None)
    if blob is None:
        raise StorageError(
            f"{url} not found: no object {name!r} in bucket {bucket!r}, or no such bucket. Check the URL; "
            f"a directory of objects needs a trailing slash: gs://{bucket}/{name}/"
        )
    if _is_current(target, blob):
        logger.info("%s: cached copy %s is up to date", url, target)
        return target
    with progress(url, blob.size or 0) as bar, gcs_errors(url):
        _fetch(blob, target, bar, retry)
    return target


def _download_prefix(
    client: storage.Client, url: str, bucket: str, prefix: str, directory: Path, workers: int, retry
) -> Path:
    """Sync every object under ``prefix`` into ``directory``; objects no longer in the bucket are removed."""
    marker = directory / PREFIX_MARKER
    remove_stale_partials_tree(directory)
    try:
        with gcs_errors(url, not_found=f"no bucket {bucket!r}"):
            blobs = [b for b in client.list_blobs(bucket, prefix=prefix, retry=retry) if not b.name.endswith("/")]
    except StorageUnreachableError as err:
        return offline_copy(err, directory, marker.is_file())
    if not blobs:
        raise StorageError(f"no objects under {url}: check the bucket and prefix (list them: gcloud storage ls {url})")
    targets = {blob.name: _cache_target(directory, blob.name[len(prefix) :], url) for blob in blobs}
    todo = [(blob, targets[blob.name]) for blob in blobs if not _is_current(targets[blob.name], blob)]
    prepare_sync(directory, set(targets.values()), bool(todo), marker, url)
    logger.info("%s: %d of %d objects cached, downloading %d", url, len(blobs) - len(todo), len(blobs), len(todo))
    _fetch_all(todo, url, workers, retry)
    atomic_write_text(marker, json.dumps({"url": url, "objects": len(blobs)}) + "\n")
    return directory


def _fetch_all(todo: list[tuple[storage.Blob, Path]], url: str, workers: int, retry) -> None:
    """Download ``(blob, target)`` pairs on a small thread pool; the first failure cancels the rest.

    Not transfer_manager.download_many: given filenames it writes straight to the final names (no temp+rename),
    and given open files it needs every file open at once and reports nothing per file until all are done.
    The client is shared across threads as transfer_manager's THREAD workers do.
    """
    if not todo:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="gcs-download")
    try:
        with progress(url, sum(blob.size or 0 for blob, _ in todo)) as bar:
            futures = [pool.submit(_fetch_one, blob, target, bar, retry) for blob, target in todo]
            for future in as_completed(futures):
                future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _fetch_one(blob: storage.Blob, target: Path, bar: Progress, retry) -> None:
    """Thread-pool task: download one object, with errors translated for its own URL."""
    with gcs_errors(f"gs://{blob.bucket.name}/{blob.name}"):
        _fetch(blob, target, bar, retry)


def _fetch(blob: storage.Blob, target: Path, bar: Progress, retry) -> None:
    """Download ``blob`` to a temporary sibling of ``target``, rename it into place, then write its sidecar."""
    # Read before downloading: the download overwrites blob.generation from the response headers.
    record = {"object": f"gs://{blob.bucket.name}/{blob.name}", "generation": blob.generation, "size": blob.size}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    try:
        with open(partial, "wb") as handle:
            # The media link of a listed/fetched blob pins its generation, so bytes and record agree.
            blob.download_to_file(ProgressWriter(handle, bar), retry=retry)
            handle.flush()
            os.fsync(handle.fileno())
        record["local_size"] = partial.stat().st_size
        sidecar(target).unlink(missing_ok=True)
        os.replace(partial, target)
        write_sidecar(target, record)
    finally:
        partial.unlink(missing_ok=True)


def _cache_target(root: Path, name: str, url: str) -> Path:
    return cache_target(root, name, url, reserved=(PREFIX_MARKER,))


def _is_current(target: Path, blob: storage.Blob) -> bool:
    """Whether the cached ``target`` is a complete copy of the blob's current generation."""
    record = read_sidecar(target, complete=True)
    return record is not None and record.get("generation") == blob.generation and record.get("size") == blob.size


@contextmanager
def gcs_errors(url: str, not_found: str | None = None, access: str = "read") -> Iterator[None]:
    """Turn google-cloud errors into one StorageError naming ``url`` and the fix."""
    try:
        yield
    except api_exceptions.NotFound as err:
        raise StorageError(
            f"{url} not found ({not_found or _reason(err)}): check the bucket and object names"
        ) from None
    except (api_exceptions.Unauthorized, api_exceptions.Forbidden) as err:
        raise _denied(url, f"HTTP {err.code}: {_reason(err)}", access) from None
    except auth_exceptions.InvalidOperation:
        # On HTTP 401 google.auth refreshes the credentials and retries; anonymous ones refuse to refresh.
        raise _denied(url, "HTTP 401: the bucket refuses anonymous access", access) from None
    except (auth_exceptions.RefreshError, auth_exceptions.DefaultCredentialsError) as err:
        raise StorageError(f"credentials for {url} do not work ({err}): {CREDENTIALS_HELP}") from None
    except DataCorruption:
        raise StorageError(f"{url}: downloaded bytes fail the checksum; run again to download anew") from None
    except _UNREACHABLE as err:
        endpoint = os.environ.get("STORAGE_EMULATOR_HOST") or "storage.googleapis.com"
        raise StorageUnreachableError(
            f"connection to Google Cloud Storage ({endpoint}) failed for {url}: {_short(err)}; check the network "
            "connection (or STORAGE_EMULATOR_HOST) and run again"
        ) from None
    except api_exceptions.GoogleAPICallError as err:
        raise StorageError(f"{url}: Google Cloud Storage request failed (HTTP {err.code}: {_reason(err)})") from None
    except OSError as err:  # after _UNREACHABLE: requests' errors are OSErrors too
        where = "read the file to upload" if access == "write" else "write the cache"
        raise StorageError(f"{url}: cannot {where} ({err}); check the path, its permissions and free space") from None


def _denied(url: str, detail: str, access: str = "read") -> StorageError:
    """The error for a bucket that refuses the caller (anonymous, or credentials without access)."""
    role = "roles/storage.objectUser" if access == "write" else "roles/storage.objectViewer"
    return StorageError(
        f"access to {url} denied ({detail}). The bucket needs credentials with {access} access ({role}): "
        f"{CREDENTIALS_HELP}"
    )


def _reason(err: api_exceptions.GoogleAPICallError) -> str:
    """The server's explanation of a failed request, without the "GET <url>: " that api_core puts first."""
    method, _, rest = err.message.partition(" ")
    return (rest.partition(": ")[2] or err.message) if method.isupper() else err.message


def _short(err: BaseException) -> str:
    """The innermost cause of a retry or transport error, in one line."""
    cause = getattr(err, "cause", None) or err
    return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"[:300]
