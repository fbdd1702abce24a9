"""Copying a local folder to ``gs://`` or ``s3://bucket/prefix`` or to another folder, sending only what changed.

Used to publish a generated dataset shard or an edflow run folder from a cluster pod, whose
local disk disappears with it. A file whose checksum (gs://: CRC32C, s3://: MD5) or size and bytes
(folder) already match the destination's copy is skipped, so a repeated or resumed publish costs one listing.
"""

from __future__ import annotations

import filecmp
import fnmatch
import logging
import os
import shutil
from pathlib import Path

from cubepose.errors import StorageError
from cubepose.io.atomic import atomic_open
from cubepose.io.temporary import is_temporary
from cubepose.storage.backends import Operation, backend_for

logger = logging.getLogger(__name__)


def local_files(folder: Path, exclude: tuple[str, ...] = ()) -> list[str]:
    """Relative POSIX paths of the files below ``folder``, minus those whose name or path matches ``exclude`` and
    temporary files (writes in progress or interrupted, and whatever is inside a temporary folder)."""
    names = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if any(is_temporary(part) for part in relative.split("/")):
            continue
        if not any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(path.name, p) for p in exclude):
            names.append(relative)
    return names


def upload_folder(local: str | os.PathLike, destination: str, exclude: tuple[str, ...] = ()) -> int:
    """Copy the files below ``local`` to ``destination`` (a remote prefix or a folder); return how many were sent.

    ``exclude`` holds glob patterns matched against each relative path and file name.
    """
    local = Path(local)
    if not local.is_dir():
        raise StorageError(f"{local} is not a folder; nothing to upload")
    backend = backend_for(destination)
    backend.require(Operation.UPLOAD_FOLDER, destination)
    names = local_files(local, exclude)
    if backend.remote:
        return backend.module().upload_folder(local, names, destination.rstrip("/"))
    return _copy_to_folder(local, names, Path(destination))


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
