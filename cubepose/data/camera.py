"""The camera of legacy examples, taken from the config because legacy ``camera_intrinsic`` is unreliable.

``data/camera`` gives either fx, fy, cx, cy in pixels of the exported images, or a vertical
field of view (Unity's default camera: 60 deg) for a centred camera with square pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError

from cubepose.data.pose_index import PoseIndex
from cubepose.errors import DatasetError
from cubepose.geometry import intrinsics_from_fov

PIXEL_KEYS = ("fx", "fy", "cx", "cy")


def camera_from_config(spec: dict, image_size: tuple[int, int]) -> np.ndarray:
    """(4,) intrinsics for images of ``image_size`` (width, height) from ``data/camera``."""
    if all(spec.get(key) is not None for key in PIXEL_KEYS):
        return np.array([spec[key] for key in PIXEL_KEYS], dtype=np.float64)
    return intrinsics_from_fov(spec["vertical_fov"], *image_size)


def first_image_size(index: PoseIndex) -> tuple[int, int]:
    """(width, height) of the first decodable image header; a legacy export has one camera resolution."""
    for path in index.image_paths[:16]:
        try:
            with Image.open(path) as image:
                return image.size
        except (OSError, UnidentifiedImageError):
            continue
    raise DatasetError(f"cannot read the size of any of the first images in {index.root}; check the image files")


def with_config_camera(index: PoseIndex, spec: dict) -> PoseIndex:
    """``index`` with every example given the configured camera at the exported image size."""
    size = first_image_size(index)
    return index.with_camera(camera_from_config(spec, size), size)
