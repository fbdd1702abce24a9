"""Encoded images that decoders misread: tiny, well-formed files whose header declares any width and height
(a decompression bomb), and 16-bit greyscale PNGs, for the tests of every path that decodes an image."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and the CRC of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_claiming(width: int, height: int) -> bytes:
    """A complete, tiny PNG (signature, IHDR with a correct CRC, a small IDAT, IEND) declaring ``width`` x
    ``height`` 8-bit RGB pixels, with far too little data for them."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + bytes(3 * 16))  # one filtered row of 16 pixels
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def sixteen_bit_png(width: int = 48, height: int = 40) -> tuple[bytes, np.ndarray]:
    """A 16-bit greyscale PNG of a ramp over the whole 16-bit range, and the 8-bit RGB image it shows (the top
    byte of each value in every channel)."""
    values = (np.arange(width * height).reshape(height, width) * (65535 // (width * height))).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    return buffer.getvalue(), np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=2)
