"""A cheap integrity check of image files at indexing: present, right signature, not truncated.

Reading 8 bytes at the start and a few at the end of each file finds missing, empty,
mislabelled and truncated PNG/JPEG files without decoding any image, so a bad capture is
skipped at load time instead of stopping training mid-epoch.
"""

from __future__ import annotations

import os

import numpy as np

OK, MISSING, CORRUPT = 0, 1, 2
PROBLEM_NAMES = {MISSING: "missing image", CORRUPT: "corrupt image"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk type and its CRC close every complete PNG
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"


def image_status(path: str) -> int:
    """OK, MISSING or CORRUPT for one image file, judged by its extension's signature and end marker."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - 16))
            tail = handle.read()
    except FileNotFoundError:
        return MISSING
    except OSError:
        return CORRUPT
    extension = os.path.splitext(path)[1].lower()
    if extension == ".png":
        return OK if head == PNG_SIGNATURE and tail.endswith(PNG_END) else CORRUPT
    if extension in (".jpg", ".jpeg"):
        return OK if head.startswith(JPEG_START) and JPEG_END in tail else CORRUPT
    return OK if size > 0 else CORRUPT


def image_statuses(paths: np.ndarray) -> np.ndarray:
    """``image_status`` of every path, as an int8 array.

    One thread: with files in the page cache, 1 / 2 / 4 threads took 0.45 / 0.64 / 1.35 s for
    30,000 files on this machine (the GIL serialises the work; eval/data_speed.py indexes).
    """
    return np.fromiter((image_status(str(path)) for path in paths), dtype=np.int8, count=len(paths))
