"""The camera a caller gives with the images to predict: four numbers, a mapping, a Camera, or a camera file.

Read into the one ``Camera`` (cubepose.geometry.camera); a camera no image can have, or a file that holds none,
is a CubeposeError naming the value and the form to give, before any image or checkpoint is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cubepose.data.calibration import read_calibration
from cubepose.errors import CubeposeError
from cubepose.geometry.camera import Camera, CameraError, CameraKeysError

CameraLike = Sequence[float] | Mapping[str, Any] | Camera  # fx, fy, cx, cy in pixels of the images given
FILE_FORM = 'a JSON or YAML mapping {"fx": 600, "fy": 600, "cx": 320, "cy": 240} in pixels of the images'


def given_camera(camera: CameraLike) -> Camera:
    """A camera given as (fx, fy, cx, cy) in pixels of the images, or a mapping of those and optionally
    ``width`` and ``height`` (the images' size, then checked), as a Camera; impossible values are refused."""
    if isinstance(camera, Camera):
        return camera
    try:
        return Camera.from_mapping(camera) if isinstance(camera, Mapping) else Camera.from_intrinsics(camera)
    except CameraKeysError as err:
        raise CubeposeError(f"{err}; give {FILE_FORM}") from None
    except CameraError as err:
        raise CubeposeError(str(err)) from None


def read_camera_file(path: str | Path) -> Camera:
    """The camera in a camera file: cubepose's ``{fx, fy, cx, cy}`` JSON or YAML (optionally ``width``, ``height``,
    ``distortion``), a ROS camera_info YAML or an OpenCV calibration (cubepose.data.calibration); anything else
    (a SOLO frame, a Unity capture) is refused with the forms it takes."""
    return read_calibration(path)
