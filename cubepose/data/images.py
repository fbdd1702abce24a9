"""Decoding and resizing images to the network's input: float32 HWC RGB in [-1, 1].

[-1, 1] is edflow's image convention, so its image logging shows inputs unchanged.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError

from cubepose.errors import DatasetError


def resize_rgb(image: Image.Image, size: int) -> np.ndarray:
    """An image as RGB resized to ``size`` x ``size`` (bilinear, as Unity's model): uint8 HWC.

    The one resize of network inputs: training, evaluation and ``cubepose.predict`` all use it.
    """
    return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR, reducing_gap=3.0))


def decode_resized(path: str, size: int) -> np.ndarray:
    """Read ``path`` and ``resize_rgb`` it: uint8 HWC."""
    try:
        with Image.open(path) as image:
            return resize_rgb(image, size)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DatasetError(f"cannot decode image {path}: {err}; re-export or remove this capture") from err


def load_image(path: str, size: int) -> np.ndarray:
    """``decode_resized`` in the network's range: float32 HWC in [-1, 1]."""
    return to_network_range(decode_resized(path, size))


def to_network_range(image_uint8: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return image_uint8.astype(np.float32) / 127.5 - 1.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255] (clipped)."""
    return np.clip((np.asarray(image) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
