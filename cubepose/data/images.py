"""Opening, decoding and resizing images to the network's input (uint8 HWC RGB), and the scaling to [-1, 1],
edflow's image convention, that the training step and the predictor apply on their device.

Every image cubepose reads from a file goes through ``open_image``, the one place that turns
PIL's decompression-bomb guard (an image whose header declares more pixels than
``PIL.Image.MAX_IMAGE_PIXELS``) into an error naming the file, its size and the fix.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cubepose.data.image_check import declared_size
from cubepose.errors import DatasetError

WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PIL's modes of 16-bit (and 32-bit) greyscale
WIDE_GREY_MAX = 65535  # a 16-bit PNG's white; larger 32-bit values are clipped to it


def open_image(path: str | os.PathLike) -> Image.Image:
    """``PIL.Image.open(path)``, refusing an image of more pixels than PIL decodes safely with a DatasetError.

    PIL only warns between ``MAX_IMAGE_PIXELS`` and twice that, then decodes up to ~1 GB of pixels;
    above, it raises without naming the file. Both become one message with the file and the fix.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DatasetError(_oversized_message(path, err)) from err


def _oversized_message(path: str | os.PathLike, err: Exception) -> str:
    """What is wrong with an oversized image (its declared size where the header gives it) and the fix."""
    size = declared_size(path)
    found = f"declares {size[0]} x {size[1]} = {size[0] * size[1]:,} pixels" if size else f"is too large ({err})"
    return (
        f"image {path} {found}, more than the {Image.MAX_IMAGE_PIXELS:,} pixels PIL decodes safely "
        "(a possible decompression bomb); resize the image, or remove it (in a dataset: remove its capture)"
    )


def as_rgb(image: Image.Image) -> Image.Image:
    """An image as 8-bit RGB: 16-bit (and 32-bit integer) greyscale scaled to 8 bits, its top byte, where PIL's
    own conversion clips every value above 255 to white. Every decoded image goes through it."""
    if image.mode in WIDE_GREY_MODES:
        grey = np.clip(np.asarray(image, dtype=np.int64), 0, WIDE_GREY_MAX) >> 8
        image = Image.fromarray(grey.astype(np.uint8), mode="L")
    return image.convert("RGB")


def resize_rgb(image: Image.Image, size: int) -> np.ndarray:
    """An image as RGB (``as_rgb``) resized to ``size`` x ``size`` (bilinear, as Unity's model): uint8 HWC.

    The one resize of network inputs: training, evaluation and ``cubepose.inference.predictor`` all use it.
    """
    return np.asarray(as_rgb(image).resize((size, size), Image.BILINEAR, reducing_gap=3.0))


def decode_resized(path: str, size: int) -> np.ndarray:
    """Read ``path`` and ``resize_rgb`` it: uint8 HWC."""
    try:
        with open_image(path) as image:
            return resize_rgb(image, size)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DatasetError(f"cannot decode image {path}: {err}; re-export or remove this capture") from err


def to_network_range(image_uint8: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return image_uint8.astype(np.float32) / 127.5 - 1.0


def network_inputs(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [-1, 1]: ``to_network_range``'s arithmetic, on the
    tensor's device, so a batch can travel as uint8 (a quarter of the bytes) and be scaled there."""
    return images.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def as_uint8(image: np.ndarray) -> np.ndarray:
    """Images as uint8 [0, 255]: uint8 ones as they are (a dataset's), float ones in [-1, 1] converted."""
    image = np.asarray(image)
    return image if image.dtype == np.uint8 else to_uint8(image)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255] (clipped)."""
    return np.clip((np.asarray(image) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
