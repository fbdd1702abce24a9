"""Copying a local folder to ``gs://bucket/prefix`` or to another folder, sending only what changed.

Used to publish a generated dataset shard or an edflow run folder from a cluster pod, whose
local disk disappears with it. A file whose CRC32C (gs://) or size and bytes (folder) already
match the destination's copy is skipped, so a repeated or resumed publish costs one listing.
"""

from __future__ import annotations

import base64
import filecmp
import fnmatch
import logging
import os
import shutil
from pathlib import Path

import google_crc32c
from google.cloud.storage import transfer_manager
from google.cloud.storage.retry import DEFAULT_RETRY

from cubepose.errors import StorageError
from cubepose.io_utils import atomic_open
from cubepose.storage.backends import GCS, Operation, backend_for
from cubepose.storage.gcs import gcs_client, gcs_errors, parse_gcs_url

logger = logging.getLogger(__name__)

UPLOAD_WORKERS = 8
CHUNK = 1 << 20
ALWAYS_EXCLUDED = (".*.tmp",)  # partial files of interrupted atomic writes


def local_files(folder: Path, exclude: tuple[str, ...] = ()) -> list[str]:
    """Relative POSIX paths of the files below ``folder``, minus those whose name or path matches ``exclude``."""
    patterns = ALWAYS_EXCLUDED + tuple(exclude)
    names = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if not any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(path.name, p) for p in patterns):
            names.append(relative)
    return names


def crc32c_base64(path: Path) -> str:
    """The file's CRC32C as GCS reports it: base64 of the big-endian 32-bit checksum."""
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode()


def upload_folder(local: str | os.PathLike, destination: str, exclude: tuple[str, ...] = ()) -> int:
    """Copy the files below ``local`` to ``destination`` (gs://bucket/prefix or a folder); return how many were sent.

    ``exclude`` holds glob patterns matched against each relative path and file name.
    """
    local = Path(local)
    if not local.is_dir():
        raise StorageError(f"{local} is not a folder; nothing to upload")
    backend = backend_for(destination)
    backend.require(Operation.UPLOAD_FOLDER, destination)
    names = local_files(local, exclude)
    if backend is GCS:
        return _upload_to_gcs(local, names, destination.rstrip("/"))
    return _copy_to_folder(local, names, Path(destination))


def _upload_to_gcs(local: Path, names: list[str], url: str) -> int:
    """Upload the files whose CRC32C differs from the object of the same name (one listing, threads)."""
    bucket_name, prefix = parse_gcs_url(url + "/")
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
            max_workers=UPLOAD_WORKERS,
            worker_type=transfer_manager.THREAD,
            raise_exception=True,
        )
    failures = [name for name, result in zip(todo, results, strict=True) if isinstance(result, Exception)]
    if failures:
        raise StorageError(f"uploading {len(failures)} files to {url} failed, first {failures[0]}")
    return len(todo)


def _copy_to_folder(local: Path, names: list[str], destination: Path) -> int:
    """Copy files that differ from the destination's copy, each written atomically."""
    copied = 0
    for name in names:
        source, target = local / name, destination / name
        if target.is_file() and filecmp.cmp(source, target, shallow=False):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as reader, atomic_open(target, "wb") as writer:
            shutil.copyfileobj(reader, writer)
        copied += 1
    logger.info("%s: copied %d of %d files", destination, copied, len(names))
    return copied
