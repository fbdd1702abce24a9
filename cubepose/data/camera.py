"""The camera of legacy examples, taken from the config because legacy ``camera_intrinsic`` is unreliable
(examples whose capture records ``cubepose_intrinsics``, written by cubepose generate, keep those).

``data/camera`` gives either fx, fy, cx, cy in pixels of the exported images, or a vertical
field of view (Unity's default camera: 60 deg) for a centred camera with square pixels.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from PIL import UnidentifiedImageError

from cubepose.data.images import open_image
from cubepose.data.pose_index import PoseIndex
from cubepose.errors import DatasetError
from cubepose.geometry.camera import KEYS, Camera, CameraError

logger = logging.getLogger(__name__)


def camera_from_config(spec: dict, image_size: tuple[int, int]) -> np.ndarray:
    """(4,) intrinsics for images of ``image_size`` (width, height) from ``data/camera``: its fx, fy, cx, cy, else
    its field of view's centred camera; a camera no image can have is a DatasetError naming data/camera."""
    try:
        if _gives_pixels(spec):
            return Camera.from_mapping({key: spec[key] for key in KEYS}).intrinsics
        return Camera.from_fov(spec["vertical_fov"], *image_size).intrinsics
    except CameraError as err:
        raise DatasetError(f"data/camera: {err}") from None


def _gives_pixels(spec: dict) -> bool:
    """Whether ``data/camera`` gives the camera in pixels (all of fx, fy, cx, cy), not by its field of view."""
    return all(spec.get(key) is not None for key in KEYS)


def with_opened_sizes(paths: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``sizes`` (N, 2) with the rows indexing could not read from a PNG/JPEG header (0, 0) read by PIL;
    (0, 0) stays where no size can be read."""
    sizes = sizes.copy()
    for i in np.flatnonzero((sizes == 0).any(axis=1)):
        size = _opened_size(paths[i])
        if size is not None:
            sizes[i] = size
    return sizes


def _opened_size(path: str) -> tuple[int, int] | None:
    """The size PIL reads from the header of an image that is neither PNG nor JPEG; None when it
    cannot be read or declares more pixels than PIL opens safely (``open_image``)."""
    try:
        with open_image(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError, DatasetError):
        return None


def with_config_camera(index: PoseIndex, spec: dict) -> PoseIndex:
    """``index`` with each example that records no camera given the configured camera at its own image's size.

    A legacy export normally has one resolution; mixed sizes are reported and each image keeps its
    own (a field of view gives each size its camera; pixel intrinsics fit one size only, so they are
    refused). Images whose size cannot be read are skipped as corrupt.
    """
    sizes = with_opened_sizes(index.image_paths, index.image_sizes)
    readable = (sizes > 0).all(axis=1)
    if not readable.all():
        logger.warning(
            "%s: skipped %d more captures: corrupt image (no readable size, or too large to open)",
            index.root,
            (~readable).sum(),
        )
        index, sizes = index.subset(readable), sizes[readable]
        index.skipped["corrupt image"] += int((~readable).sum())
    if len(index) == 0:
        raise DatasetError(f"cannot read the size of any image in {index.root}; check the image files")
    needs = np.isnan(index.cameras).any(axis=1)
    if not needs.any():
        return replace(index, image_sizes=sizes)
    distinct, inverse, counts = np.unique(sizes[needs], axis=0, return_inverse=True, return_counts=True)
    if len(distinct) > 1:
        listed = ", ".join(f"{w}x{h} ({n})" for (w, h), n in zip(distinct, counts, strict=True))
        if _gives_pixels(spec):
            raise DatasetError(
                f"{index.root} mixes image sizes ({listed}) but data/camera gives fx, fy, cx, cy in pixels of one "
                "size; set data/camera/vertical_fov instead (and fx, fy, cx, cy to null), or split the export by size"
            )
        logger.warning("%s mixes image sizes: %s; each image keeps its own size and camera", index.root, listed)
    cameras = index.cameras.copy()
    cameras[needs, :4] = np.stack([camera_from_config(spec, tuple(size)) for size in distinct])[inverse.reshape(-1)]
    return replace(index, cameras=cameras, image_sizes=sizes)
