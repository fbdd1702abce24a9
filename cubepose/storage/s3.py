"""Amazon S3 and S3-compatible stores (MinIO, Ceph) as ``s3://bucket/key`` URLs, through boto3.

Downloads go into the cache as gs:// ones do (cache.py): ``<cache_dir>/s3/<bucket>/<key>``, written to a
temporary sibling and renamed, with a sidecar recording the object's ETag and size; a cached file is reused
while both match, and used when S3 cannot be reached. A prefix (``s3://bucket/dir/``) is synced with objects
gone from the bucket removed, and marked complete once every object is in.

Credentials and endpoint come from boto3's own chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or
``AWS_PROFILE``, ``~/.aws``, an instance role), ``AWS_ENDPOINT_URL`` for MinIO and other S3-compatible
servers, ``AWS_REGION``. Without credentials, reads are unsigned (public buckets) and writes are refused
naming the variables to set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

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
from cubepose.io.atomic import atomic_write_text
from cubepose.storage.backends import scheme_of
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
    root = Path(cache_dir) / "s3" / bucket
    client = s3_client()
    if url.endswith("/"):
        directory = _cache_target(root, key.rstrip("/"), url) if key else root
        return _download_prefix(client, url, bucket, key, directory, workers)
    if not key:
        raise StorageError(f"{url!r} names no object; for the whole bucket use s3://{bucket}/, else {URL_FORMS}")
    return _download_object(client, url, bucket, key, _cache_target(root, key, url))


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


def _download_object(client, url: str, bucket: str, key: str, target: Path) -> Path:
    """Fetch one object unless the cached copy is current; fall back to the cache when S3 is unreachable."""
    remove_stale_partials(target.parent, target.name)
    try:
        with s3_errors(url, not_found=f"no object {key!r} in bucket {bucket!r}, or no such bucket"):
            head = client.head_object(Bucket=bucket, Key=key)
    except StorageUnreachableError as err:
        return offline_copy(err, target, read_sidecar(target, complete=True) is not None)
    item = {"Key": key, "ETag": head["ETag"], "Size": head["ContentLength"]}
    if _is_current(target, item):
        logger.info("%s: cached copy %s is up to date", url, target)
        return target
    with progress(url, item["Size"]) as bar, s3_errors(url):
        _fetch(client, bucket, item, target, bar)
    return target


def _download_prefix(client, url: str, bucket: str, prefix: str, directory: Path, workers: int) -> Path:
    """Sync every object under ``prefix`` into ``directory``; objects no longer in the bucket are removed."""
    marker = directory / PREFIX_MARKER
    remove_stale_partials_tree(directory)
    try:
        with s3_errors(url, not_found=f"no bucket {bucket!r}"):
            items = _listing(client, bucket, prefix)
    except StorageUnreachableError as err:
        return offline_copy(err, directory, marker.is_file())
    if not items:
        raise StorageError(f"no objects under {url}: check the bucket and prefix (list them: aws s3 ls {url})")
    targets = {item["Key"]: _cache_target(directory, item["Key"][len(prefix) :], url) for item in items}
    todo = [(item, targets[item["Key"]]) for item in items if not _is_current(targets[item["Key"]], item)]
    prepare_sync(directory, set(targets.values()), bool(todo), marker, url)
    logger.info("%s: %d of %d objects cached, downloading %d", url, len(items) - len(todo), len(items), len(todo))
    if todo:
        with progress(url, sum(item["Size"] for item, _ in todo)) as bar:
            with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="s3-download") as pool:
                futures = [pool.submit(_fetch_one, client, bucket, item, target, bar) for item, target in todo]
                for future in as_completed(futures):
                    future.result()
    atomic_write_text(marker, json.dumps({"url": url, "objects": len(items)}) + "\n")
    return directory


def _fetch_one(client, bucket: str, item: dict, target: Path, bar: Progress) -> None:
    with s3_errors(f"s3://{bucket}/{item['Key']}"):
        _fetch(client, bucket, item, target, bar)


def _fetch(client, bucket: str, item: dict, target: Path, bar: Progress) -> None:
    """Download the object's version ``item`` describes (IfMatch its ETag) to a temporary sibling of ``target``,
    rename it into place, then write its sidecar."""
    record = {"object": f"s3://{bucket}/{item['Key']}", "etag": item["ETag"], "size": item["Size"]}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    try:
        with open(partial, "wb") as handle:
            body = client.get_object(Bucket=bucket, Key=item["Key"], IfMatch=item["ETag"])["Body"]
            writer = ProgressWriter(handle, bar)
            for chunk in body.iter_chunks(MD5_CHUNK):
                writer.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        record["local_size"] = partial.stat().st_size
        if record["local_size"] != item["Size"]:
            raise StorageError(f"{record['object']}: got {record['local_size']} of {item['Size']} bytes; run again")
        sidecar(target).unlink(missing_ok=True)
        os.replace(partial, target)
        write_sidecar(target, record)
    finally:
        partial.unlink(missing_ok=True)


def _cache_target(root: Path, name: str, url: str) -> Path:
    return cache_target(root, name, url, reserved=(PREFIX_MARKER,))


def _is_current(target: Path, item: dict) -> bool:
    """Whether the cached ``target`` is a complete copy of the object's current ETag and size."""
    record = read_sidecar(target, complete=True)
    return record is not None and record.get("etag") == item["ETag"] and record.get("size") == item["Size"]


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
