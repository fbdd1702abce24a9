"""Decoded, resized images of a split in one uint8 ``.npy`` memmap, built once and reused.

PNG decoding is the data pipeline's hot spot (about 0.55 ms of 0.75 ms per 128 px image),
and edflow's batches give the workers no overlap to hide it. With ``image_cache: true`` a
split's images are decoded and resized once into ``<cache_dir>/images/<key>.npy``; examples
are then a memory copy, and edflow's forked workers share the pages. The key covers every
image path, size and mtime and the network size, so a changed file means a new cache.

A build writes a locked temporary beside its file (``cubepose.io.temporary``) and renames it
into place when complete. A killed build (SIGKILL, OOM) cannot clean up its temporary, which
may be gigabytes; the next ``cached_images`` removes every temporary in the folder whose
process is gone and that no one holds locked (a builder in another container sharing the cache).
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cubepose.data.images import decode_resized
from cubepose.io.temporary import remove_orphans, temporary_beside

logger = logging.getLogger(__name__)

CHUNK = 64  # images per task when building
POOL_MINIMUM = 4 * CHUNK  # fewer images are decoded in this process: starting workers costs ~1 s


def cache_key(paths: np.ndarray, size: int) -> str:
    """A digest of the image files (path, size, mtime) and the network size."""
    digest = hashlib.sha256(f"cubepose-images-v1 {size}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"\n{path}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _decode_chunk(task: tuple[list[str], int]) -> np.ndarray:
    paths, size = task
    return np.stack([decode_resized(path, size) for path in paths])


def cached_images(paths: np.ndarray, size: int, cache_dir: Path, workers: int) -> np.ndarray:
    """A read-only (N, size, size, 3) uint8 memmap of ``paths``, built first if it does not exist."""
    path = cache_dir / "images" / f"{cache_key(paths, size)}-{size}px.npy"
    remove_orphans(path.parent)  # temporaries of killed builds
    if not path.exists():
        _build(path, [str(p) for p in paths], size, workers)
    images = np.load(path, mmap_mode="r")
    logger.info("image cache %s: %d images at %d px", path, len(images), size)
    return images


def _build(path: Path, paths: list[str], size: int, workers: int) -> None:
    """Decode into a locked temporary .npy beside ``path`` and rename it when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with temporary_beside(path) as temporary:
        images = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        tasks = [(paths[start : start + CHUNK], size) for start in range(0, len(paths), CHUNK)]
        pool = None
        if workers > 1 and len(paths) >= POOL_MINIMUM:
            pool = multiprocessing.get_context("spawn").Pool(workers)
        try:
            chunks = pool.imap(_decode_chunk, tasks) if pool else map(_decode_chunk, tasks)
            with tqdm(total=len(paths), desc=f"caching images at {size} px", unit="img") as progress:
                for start, chunk in zip(range(0, len(paths), CHUNK), chunks, strict=True):
                    images[start : start + len(chunk)] = chunk
                    progress.update(len(chunk))
        finally:
            if pool:
                pool.close()
                pool.join()
        images.flush()
        del images
        os.replace(temporary, path)
