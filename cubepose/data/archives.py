"""Extracting a zipped dataset once, next to the archive, and reusing it on later runs.

Extraction goes to a temporary folder renamed into place when complete, with a marker
recording the archive's size and mtime; every member's CRC is checked while extracting.
A folder that exists without a matching marker is never overwritten.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from cubepose.errors import DatasetError
from cubepose.io_utils import atomic_write_text, default_dir_mode

logger = logging.getLogger(__name__)

MARKER = ".cubepose-extracted.json"


def extraction_dir(archive: Path) -> Path:
    """Where ``name.zip`` is extracted: the folder ``name`` beside it."""
    return archive.with_suffix("")


def _fingerprint(archive: Path) -> dict:
    stat = archive.stat()
    return {"archive": archive.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def extract_zip(archive: str | os.PathLike) -> Path:
    """The extracted folder of ``archive``, extracting it first unless an up-to-date copy exists."""
    archive = Path(archive)
    if not archive.is_file():
        raise DatasetError(f"dataset archive {archive} does not exist; check data/<split>/root")
    target = extraction_dir(archive)
    fingerprint = _fingerprint(archive)
    if target.exists():
        marker = _marker(target)
        if marker is None:
            raise DatasetError(
                f"{target} exists but was not extracted from {archive.name} by cubepose; set data/<split>/root "
                f"to {target} to use it, or move it away so the archive can be extracted"
            )
        if {k: marker.get(k) for k in fingerprint} == fingerprint:
            return target
        logger.info("%s changed since it was extracted; extracting it again", archive)
    _extract(archive, target, fingerprint)
    return target


def _extract(archive: Path, target: Path, fingerprint: dict) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.extracting-", dir=target.parent))
    staging.chmod(default_dir_mode())  # mkdtemp's 0700 would hide the dataset from the user's group
    try:
        with zipfile.ZipFile(archive) as handle:
            members = handle.infolist()
            for member in tqdm(members, desc=f"extracting {archive.name}", unit="file", leave=False):
                handle.extract(member, staging)  # reading a member checks its CRC
        atomic_write_text(staging / MARKER, json.dumps({**fingerprint, "files": len(members)}))
        if target.exists():  # an outdated extraction of ours (checked by the caller)
            shutil.rmtree(target)
        os.replace(staging, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as err:
        raise DatasetError(f"{archive} is not a valid zip archive ({err}); download or export it again") from err
    except OSError as err:
        raise DatasetError(f"cannot extract {archive} into {target.parent}: {err}") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("extracted %s to %s", archive, target)
