"""Amazon S3 and S3-compatible stores (MinIO, Ceph) as ``s3://bucket/key`` URLs, through boto3.

Downloads go into the cache as gs:// ones do, through sync.py: ``<cache_dir>/s3/<bucket>/<key>``, a file reused
while its sidecar records the object's current ETag and size; a synced prefix is marked by ``.s3-prefix.json``.

Credentials and endpoint come from boto3's own chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or
``AWS_PROFILE``, ``~/.aws``, an instance role), ``AWS_ENDPOINT_URL`` for MinIO and other S3-compatible
servers, ``AWS_REGION``. Without credentials, reads are unsigned (public buckets) and writes are refused
naming the variables to set.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from cubepose.errors import StorageError, StorageUnreachableError
from cubepose.storage import sync
from cubepose.storage.backends import scheme_of

logger = logging.getLogger(__name__)

URL_FORMS = "s3://bucket/path/file.zip (one object) or s3://bucket/prefix/ (every object under a prefix)"
CREDENTIALS_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) to a key with access to the bucket, "
    "and AWS_ENDPOINT_URL for an S3-compatible server such as MinIO"
)
PREFIX_MARKER = ".s3-prefix.json"
DEFAULT_WORKERS = 8
MD5_CHUNK = 1 << 20
RETRIES = {"max_attempts": 4, "mode": "standard"}
_UNREACHABLE = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
_NOT_FOUND = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
_DENIED = {"401", "403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}


def parse_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into ``(bucket, key)``; ``key`` keeps a trailing ``/`` of a prefix."""
    if scheme_of(url) != "s3":
        raise StorageError(f"{url!r} is not an s3:// URL; use {URL_FORMS}")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"{url!r} names no bucket; use {URL_FORMS}")
    return bucket, key


def has_credentials() -> bool:
    """Whether boto3's chain finds credentials (environment, profile, instance role)."""
    return boto3.session.Session().get_credentials() is not None


def s3_client(signed: bool | None = None):
    """An S3 client from boto3's chain; unsigned (public buckets only) when no credentials are found."""
    signed = has_credentials() if signed is None else signed
    options = {"retries": RETRIES}
    if not signed:
        logger.info("no AWS credentials found; reading s3:// anonymously (public buckets only)")
        options["signature_version"] = UNSIGNED
    return boto3.session.Session().client("s3", config=Config(**options))


def download(url: str, cache_dir: str | os.PathLike, *, workers: int = DEFAULT_WORKERS) -> Path:
    """Download an object (``s3://b/file.zip``) or every object under a prefix (``s3://b/dir/``) into the cache;
    unchanged objects are reused."""
    bucket, key = parse_url(url)
    client = s3_client()
    local = sync.cache_location(url, Path(cache_dir) / "s3" / bucket, key, PREFIX_MARKER, URL_FORMS)
    return sync.download(S3Bucket(client, bucket, PREFIX_MARKER, "aws s3 ls"), url, key, local, workers)


def upload_file(local: str | os.PathLike, url: str) -> None:
    """Upload one local file to ``s3://bucket/key`` in one attempt (callers retry), replacing the object."""
    bucket, key = parse_url(url)
    if not key or key.endswith("/"):
        raise StorageError(f"{url!r} names no object; upload to s3://bucket/path/file")
    client = _writing_client(url)
    with s3_errors(url, access="write"):
        client.upload_file(str(local), bucket, key)


def upload_folder(local: Path, names: list[str], url: str) -> int:
    """Upload the files under ``local`` (relative ``names``) to the prefix ``url`` whose object differs (by MD5
    where the ETag is one, else by size); return how many were sent."""
    bucket, prefix = parse_url(url.rstrip("/") + "/")
    client = _writing_client(url)
    with s3_errors(url, access="write"):
        remote = {item["Key"][len(prefix) :]: item for item in _listing(client, bucket, prefix)}
    todo = [name for name in names if not _same(local / name, remote.get(name))]
    logger.info("%s: %d of %d files already there, uploading %d", url, len(names) - len(todo), len(names), len(todo))
    with ThreadPoolExecutor(max_workers=DEFAULT_WORKERS, thread_name_prefix="s3-upload") as pool:
        futures = [pool.submit(_put, client, local / name, bucket, prefix + name, url) for name in todo]
        for future in as_completed(futures):
            future.result()
    return len(todo)


def exists(url: str) -> bool:
    """Whether the object ``url`` exists."""
    bucket, key = parse_url(url)
    with s3_errors(url):
        try:
            s3_client().head_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if _code(err) in _NOT_FOUND:
                return False
            raise
    return True


def copy_command(local: str | os.PathLike, url: str) -> str:
    """The shell command that uploads ``local`` to ``url`` by hand."""
    return f"aws s3 cp {local} {url}"


def _writing_client(url: str):
    if not has_credentials():
        raise StorageError(f"cannot write to {url}: no AWS credentials found; {CREDENTIALS_HELP}")
    return s3_client(signed=True)


def _put(client, path: Path, bucket: str, key: str, url: str) -> None:
    with s3_errors(f"s3://{bucket}/{key}", access="write"):
        client.upload_file(str(path), bucket, key)


def _same(path: Path, item: dict | None) -> bool:
    """Whether the listed object ``item`` holds the bytes of ``path`` (MD5 for a single-part ETag)."""
    if item is None or item["Size"] != path.stat().st_size:
        return False
    etag = item["ETag"].strip('"')
    if "-" in etag:  # a multipart upload's ETag is not the file's MD5: equal sizes must do
        return True
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(MD5_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest() == etag


def _listing(client, bucket: str, prefix: str) -> list[dict]:
    """Every object under ``prefix`` (not the folder placeholders ending in ``/``)."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item for page in pages for item in page.get("Contents", []) if not item["Key"].endswith("/")]


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


@contextmanager
def s3_errors(url: str, not_found: str | None = None, access: str = "read") -> Iterator[None]:
    """Turn boto3's errors into one StorageError naming ``url`` and the fix."""
    try:
        yield
    except ClientError as err:
        code, message = _code(err), err.response.get("Error", {}).get("Message", "")
        if code in _NOT_FOUND:
            detail = not_found or "no such object or bucket"
            raise StorageError(
                f"{url} not found ({detail}): check the bucket and key; a prefix needs a trailing /"
            ) from None
        if code in _DENIED:
            action = "s3:PutObject" if access == "write" else "s3:GetObject and s3:ListBucket"
            raise StorageError(
                f"access to {url} denied ({code}: {message or 'no reason given'}). The bucket needs credentials "
                f"allowed {action}: {CREDENTIALS_HELP}"
            ) from None
        raise StorageError(f"{url}: S3 request failed ({code}: {message})") from None
    except NoCredentialsError:
        raise StorageError(f"no AWS credentials for {url}: {CREDENTIALS_HELP}") from None
    except _UNREACHABLE as err:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
        raise StorageUnreachableError(
            f"connection to {endpoint} failed for {url}: {err}; check the network (or AWS_ENDPOINT_URL) and run again"
        ) from None
    except BotoCoreError as err:
        raise StorageError(f"{url}: S3 request failed ({err})") from None
    except OSError as err:
        where = "read the file to upload" if access == "write" else "write the cache"
        raise StorageError(f"{url}: cannot {where} ({err}); check the path, its permissions and free space") from None


class S3Bucket(sync.Store):
    """The sync engine's adapter for one S3 bucket: a cached copy is current while its sidecar names the object's
    ETag, and a fetch asks for that ETag (IfMatch) so that bytes and record agree."""

    errors = staticmethod(s3_errors)

    def head(self, url: str, key: str) -> sync.Remote:
        """The object's current ETag and size; a StorageError naming the URL if there is none."""
        with s3_errors(url, not_found=f"no object {key!r} in bucket {self.bucket!r}, or no such bucket"):
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        return sync.Remote(key, f"s3://{self.bucket}/{key}", head["ContentLength"], {"etag": head["ETag"]})

    def listing(self, url: str, prefix: str) -> list[sync.Remote]:
        """Every object under ``prefix``, at its current ETag."""
        with s3_errors(url, not_found=f"no bucket {self.bucket!r}"):
            items = _listing(self.client, self.bucket, prefix)
        return [sync.Remote(i["Key"], f"s3://{self.bucket}/{i['Key']}", i["Size"], {"etag": i["ETag"]}) for i in items]

    def fetch(self, remote: sync.Remote, out: IO[bytes]) -> None:
        """Stream the object's listed version (IfMatch its ETag) to ``out``, a fresh file; a short body is an error."""
        body = self.client.get_object(Bucket=self.bucket, Key=remote.name, IfMatch=remote.version["etag"])["Body"]
        for chunk in body.iter_chunks(MD5_CHUNK):
            out.write(chunk)
        if out.tell() != remote.size:
            raise StorageError(f"{remote.url}: got {out.tell()} of {remote.size} bytes; run again")
