"""A location string -> a local file: a path as is, gs://, s3:// and http(s):// through the download cache.

An optional sha256 pin is checked on the local bytes before anyone reads them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cubepose.errors import StorageError
from cubepose.storage.backends import backend_for

HASH_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$CUBEPOSE_CACHE``, else ``~/.cache/cubepose``: where remote datasets and checkpoints are kept."""
    return Path(os.environ.get("CUBEPOSE_CACHE") or Path.home() / ".cache" / "cubepose").expanduser()


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(location: str | os.PathLike, cache_dir: str | os.PathLike | None = None, sha256: str | None = None) -> Path:
    """The local file for ``location`` (downloaded if remote), its SHA-256 checked against ``sha256`` if given."""
    location = str(location)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    backend = backend_for(location)
    if backend.remote:
        if location.endswith("/"):
            raise StorageError(f"{location} is a prefix; name one object ({location}model-100.ckpt)")
        path = backend.module().download(location, cache)
    else:
        path = Path(location).expanduser()
        if not path.is_file():
            raise StorageError(
                f"{location} does not exist or is not a file; give a path, gs://, s3:// or http(s):// URL"
            )
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256.strip().lower():
            raise StorageError(
                f"sha256 of {location} is {actual}, but the pin says {sha256}: the file changed or the pin is wrong. "
                "Check where the file came from; if it is the one you want, update the pin"
            )
    return path
