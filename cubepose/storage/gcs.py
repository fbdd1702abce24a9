"""Google Cloud Storage (``gs://`` URLs): downloads into a local cache, atomic and reusable; uploads.

Cache layout: ``<cache_dir>/gcs/<bucket>/<object name>``, synced by sync.py through :class:`GcsBucket`: a file is
reused while its sidecar records the object's current ``generation`` and ``size``, and a synced prefix is marked
complete by ``.gcs-prefix.json``, so that an offline run can tell a complete copy from a half-synced one.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import google_crc32c
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.cloud import storage
from google.cloud.storage import transfer_manager
from google.cloud.storage.exceptions import DataCorruption
from google.cloud.storage.retry import DEFAULT_RETRY

from cubepose.errors import StorageError, StorageUnreachableError
from cubepose.storage import sync
from cubepose.storage.backends import is_gcs_url

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
    url: str, cache_dir: str | os.PathLike, *, workers: int = DEFAULT_WORKERS, retry_timeout: float = 60.0
) -> Path:
    """Download an object (``gs://b/file.zip``) or every object under a prefix (``gs://b/dir/``) into the cache.

    Returns the cached file or directory; unchanged objects are reused, changed ones downloaded again.
    """
    bucket, path = parse_url(url)
    local = sync.cache_location(url, Path(cache_dir) / "gcs" / bucket, path, PREFIX_MARKER, URL_FORMS)
    with gcs_client() as client:
        store = GcsBucket(client, bucket, PREFIX_MARKER, "gcloud storage ls", DEFAULT_RETRY.with_timeout(retry_timeout))
        return sync.download(store, url, path, local, workers)


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


@dataclass(frozen=True)
class GcsBucket(sync.Store):
    """The sync engine's adapter for one GCS bucket: a cached copy is current while its sidecar names the object's
    generation, and a fetch downloads the generation the blob was listed or fetched at."""

    retry: Retry
    errors = staticmethod(gcs_errors)

    def head(self, url: str, name: str) -> sync.Remote:
        """The object's current generation; a StorageError naming the URL if there is none."""
        with gcs_errors(url):
            blob = self.client.bucket(self.bucket).get_blob(name, retry=self.retry)
        if blob is None:
            raise StorageError(
                f"{url} not found: no object {name!r} in bucket {self.bucket!r}, or no such bucket. Check the URL; "
                f"a directory of objects needs a trailing slash: gs://{self.bucket}/{name}/"
            )
        return _remote(blob)

    def listing(self, url: str, prefix: str) -> list[sync.Remote]:
        """Every object under ``prefix``, at its current generation."""
        with gcs_errors(url, not_found=f"no bucket {self.bucket!r}"):
            blobs = self.client.list_blobs(self.bucket, prefix=prefix, retry=self.retry)
            return [_remote(blob) for blob in blobs if not blob.name.endswith("/")]

    def fetch(self, remote: sync.Remote, out: IO[bytes]) -> None:
        """Stream the blob (its media link pins the listed generation, so bytes and record agree) to ``out``.
        Not transfer_manager.download_many: given filenames it writes straight to the final names (no temp+rename),
        and given open files it needs every file open at once and reports nothing per file until all are done.
        The client is shared across threads as transfer_manager's THREAD workers do."""
        remote.handle.download_to_file(out, retry=self.retry)


def _remote(blob: storage.Blob) -> sync.Remote:
    """A listed or fetched blob as the engine sees it, read now: a download overwrites ``blob.generation``."""
    return sync.Remote(
        blob.name, f"gs://{blob.bucket.name}/{blob.name}", blob.size, {"generation": blob.generation}, blob
    )
