"""A cheap integrity check of image files at indexing: present, right signature, not truncated, not oversized.

Reading the first bytes and a few at the end of each file finds missing, empty, mislabelled
and truncated PNG/JPEG files without decoding any image, so a bad capture is skipped at load
time instead of stopping training mid-epoch. The header also gives the declared size (PNG
``IHDR``, JPEG start-of-frame): an image of more pixels than PIL decodes safely (a possible
decompression bomb, ``PIL.Image.MAX_IMAGE_PIXELS``) is skipped as oversized rather than
decoded into gigabytes later.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

import numpy as np
from PIL import Image

OK, MISSING, CORRUPT, OVERSIZED = 0, 1, 2, 3
PROBLEM_NAMES = {MISSING: "missing image", CORRUPT: "corrupt image", OVERSIZED: "oversized image"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk type and its CRC close every complete PNG
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they hold the image size.
# C4 (Huffman tables), C8 (reserved) and CC (arithmetic conditioning) share the range but are not frames.
JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_SEGMENTS_READ = 32  # EXIF, ICC and tables come before the frame header: a few segments in practice


def inspect_image(path: str) -> tuple[int, tuple[int, int] | None]:
    """OK, MISSING, CORRUPT or OVERSIZED for one image file, judged by its extension's signature,
    end marker and declared size; and that declared (width, height) when the header gives it."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - 16))
            tail = handle.read()
            extension = os.path.splitext(path)[1].lower()
            if extension == ".png":
                intact = head.startswith(PNG_SIGNATURE) and tail.endswith(PNG_END)
            elif extension in (".jpg", ".jpeg"):
                intact = head.startswith(JPEG_START) and JPEG_END in tail
            else:  # another format: only its size, and a PNG or JPEG header under another extension
                intact = size > 0
            if not intact:
                return CORRUPT, None
            declared = _declared_size(handle, head)
            return (OVERSIZED if is_oversized(declared) else OK), declared
    except FileNotFoundError:
        return MISSING, None
    except OSError:
        return CORRUPT, None


def image_status(path: str) -> int:
    """``inspect_image``'s status alone."""
    return inspect_image(path)[0]


def inspect_images(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``inspect_image`` of every path: int8 statuses and (N, 2) declared sizes (0, 0 where unknown).

    One thread: with files in the page cache, 1 / 2 / 4 threads took 0.45 / 0.64 / 1.35 s for
    30,000 files on this machine (the GIL serialises the work; eval/data_speed.py indexes).
    """
    statuses = np.zeros(len(paths), dtype=np.int8)
    sizes = np.zeros((len(paths), 2), dtype=np.int64)
    for i, path in enumerate(paths):
        statuses[i], declared = inspect_image(str(path))
        if declared is not None:
            sizes[i] = declared
    return statuses, sizes


def declared_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) a PNG or JPEG file's header declares, without decoding; None for other or unreadable files."""
    try:
        with open(path, "rb") as handle:
            return _declared_size(handle, handle.read(24))
    except OSError:
        return None


def is_oversized(size: tuple[int, int] | None) -> bool:
    """Whether an image of ``size`` has more pixels than PIL opens without a decompression-bomb warning.

    Read at call time, so a program that raises or clears ``PIL.Image.MAX_IMAGE_PIXELS`` is obeyed.
    """
    limit = Image.MAX_IMAGE_PIXELS
    return size is not None and limit is not None and size[0] * size[1] > limit


def _declared_size(handle: BinaryIO, head: bytes) -> tuple[int, int] | None:
    """The size in a PNG ``IHDR`` (bytes 16..24, right after the signature) or a JPEG frame header."""
    if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head.startswith(JPEG_START):
        return _jpeg_size(handle)
    return None


def _jpeg_size(handle: BinaryIO) -> tuple[int, int] | None:
    """(width, height) of a JPEG's start-of-frame segment, found by hopping over the segments before it."""
    position = 2
    for _ in range(JPEG_SEGMENTS_READ):
        handle.seek(position)
        header = handle.read(9)
        if len(header) < 4 or header[0] != 0xFF:
            return None
        marker, length = header[1], struct.unpack(">H", header[2:4])[0]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
            continue
        if marker in JPEG_FRAMES:
            if len(header) < 9:
                return None
            height, width = struct.unpack(">HH", header[5:9])  # after length and sample precision
            return width, height
        position += 2 + length
    return None
