"""Where a dataset lives: a local folder, a .zip archive, or gs:// or s3://bucket/path (.zip or prefix/).

Remote data is downloaded into a local cache (``data/cache_dir``); archives are extracted
beside themselves; the result is always a local folder for the format readers.
"""

from __future__ import annotations

from pathlib import Path

from cubepose.data.archives import extract_zip
from cubepose.storage import Operation, backend_for, default_cache_dir


def local_root(root: str, cache_dir: str | None = None) -> Path:
    """A local folder holding the dataset named by ``root`` (downloading and extracting as needed)."""
    backend = backend_for(root)
    backend.require(Operation.DOWNLOAD_FOLDER, root)
    if backend.remote:
        path = backend.module().download(root, Path(cache_dir).expanduser() if cache_dir else default_cache_dir())
    else:
        path = Path(root).expanduser()
    if path.suffix.lower() == ".zip":
        path = extract_zip(path)
    return path
