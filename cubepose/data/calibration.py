"""Camera files: cubepose's own mapping, ROS ``camera_info`` YAML and OpenCV calibration files, read into a Camera.

Three forms, told apart by their content:

- cubepose's: a JSON or YAML mapping ``{fx, fy, cx, cy}`` (optionally ``width``, ``height`` and ``distortion``),
  in cubepose's pixel convention (pixel i spans [i, i + 1): a centred cx is W / 2);
- ROS: what ``camera_calibration`` writes (``image_width``, ``camera_matrix: {data: [...]}``,
  ``distortion_model``, ``distortion_coefficients``) or ``rostopic echo -n 1 .../camera_info`` prints
  (``width``, ``K``, ``D``; ROS 2's ``k``, ``d``);
- OpenCV: a ``cv2.FileStorage`` file (YAML ``%YAML:1.0`` with ``!!opencv-matrix``, or XML) holding a camera
  matrix (``camera_matrix``, ``cameraMatrix`` or ``K``), its distortion and, when written, the image size.

ROS and OpenCV put pixel centres on whole numbers, so their cx, cy gain ``OPENCV_PIXEL_SHIFT`` here (and lose it in
``camera_info_yaml``); distortion coefficients need no change. A file that is none of these, a distortion model
other than ``plumb_bob`` / ``rational_polynomial``, or impossible values is a CubeposeError naming the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cubepose.errors import CubeposeError
from cubepose.geometry.camera import KEYS, Camera, CameraError
from cubepose.geometry.conventions import OPENCV_PIXEL_SHIFT
from cubepose.geometry.distortion import MODELS

MAX_FILE_BYTES = 1 << 20  # a calibration is a few hundred bytes; anything this large is not one
FORMS = (
    'a camera file: JSON or YAML {"fx": 600, "fy": 600, "cx": 320, "cy": 240} in pixels of the images (optionally '
    "width, height and distortion), a ROS camera_info YAML, or an OpenCV calibration file (cv2.FileStorage)"
)
OPENCV_MATRIX_KEYS = ("camera_matrix", "cameraMatrix", "K", "intrinsic_matrix")
OPENCV_DISTORTION_KEYS = ("distortion_coefficients", "dist_coeffs", "distCoeffs", "D", "distortion")
NO_DISTORTION = ("", "none")  # what ROS drivers of already rectified cameras put in distortion_model


def read_calibration(path: str | Path) -> Camera:
    """The camera in the file at ``path``, in cubepose's pixel convention, with its distortion when it has one."""
    text = _text(Path(path))
    try:
        if text.lstrip().startswith(("%YAML", "<?xml", "<opencv_storage")):
            return _opencv_camera(text, path)
        data = _mapping(text, path)
        if isinstance(data.get("camera_matrix"), Mapping):
            return _ros_calibration_camera(data, path)
        if any(key in data for key in ("K", "k")):
            return _ros_message_camera(data, path)
        if set(KEYS) <= set(data):
            return Camera.from_mapping(data)
    except CameraError as err:
        raise CubeposeError(f"{path}: {err}") from None
    raise CubeposeError(
        f"{path} is not {FORMS}; SOLO frames and Unity captures are not read here, copy their intrinsics into one"
    )


def camera_info_yaml(camera: Camera, name: str = "cubepose") -> str:
    """``camera`` as ROS ``camera_calibration`` writes a camera_info YAML (OpenCV's pixel centres), which
    ``read_calibration``, ROS' ``camera_info_manager`` and OpenCV users read back."""
    if camera.size is None:
        raise CubeposeError("a camera_info file needs the image size; give the camera's width and height")
    cx, cy = camera.cx - OPENCV_PIXEL_SHIFT, camera.cy - OPENCV_PIXEL_SHIFT
    matrix = [camera.fx, 0.0, cx, 0.0, camera.fy, cy, 0.0, 0.0, 1.0]
    model = camera.distortion_model or "plumb_bob"
    coefficients = list(camera.distortion or ())[: MODELS[model]] or [0.0] * MODELS[model]
    info = {
        "image_width": camera.width,
        "image_height": camera.height,
        "camera_name": name,
        "camera_matrix": {"rows": 3, "cols": 3, "data": matrix},
        "distortion_model": model,
        "distortion_coefficients": {"rows": 1, "cols": len(coefficients), "data": coefficients},
        "rectification_matrix": {"rows": 3, "cols": 3, "data": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]},
        "projection_matrix": {"rows": 3, "cols": 4, "data": [*matrix[:3], 0.0, *matrix[3:6], 0.0, *matrix[6:], 0.0]},
    }
    return yaml.safe_dump(info, sort_keys=False, default_flow_style=None)  # lists in one line, as ROS


def from_opencv(
    matrix: Any, distortion: Any = None, size: tuple[int, int] | None = None, model: str | None = None
) -> Camera:
    """A Camera from an OpenCV/ROS camera matrix (3x3 or 9 numbers, whole-number pixel centres), its distortion
    coefficients (None or empty: none; all zero: none) and the image size (width, height)."""
    values = np.asarray(matrix, dtype=np.float64).reshape(-1)
    if values.size != 9 or not np.isfinite(values).all():
        raise CameraError(f"the camera matrix must be 9 finite numbers, got {np.asarray(matrix).tolist()}")
    fx, skew, cx, zero_a, fy, cy, zero_b, zero_c, one = values
    if skew != 0 or zero_a != 0 or zero_b != 0 or zero_c != 0 or one != 1:
        raise CameraError(
            f"the camera matrix must be [fx 0 cx; 0 fy cy; 0 0 1] (no skew), got {values.tolist()}; cubepose's "
            "cameras have square-cornered pixels"
        )
    coefficients = _coefficients(distortion, model)
    width, height = size if size is not None else (None, None)
    shifted = {"fx": fx, "fy": fy, "cx": cx + OPENCV_PIXEL_SHIFT, "cy": cy + OPENCV_PIXEL_SHIFT}
    keyed = {**shifted, **({} if size is None else {"width": width, "height": height})}
    return Camera.from_mapping({**keyed, **({} if coefficients is None else {"distortion": coefficients})})


def _coefficients(distortion: Any, model: str | None) -> list[float] | None:
    """The distortion as a list for Camera, None when there is none (empty, all zero, or a rectified camera)."""
    if model is not None and model not in MODELS and model not in NO_DISTORTION:
        raise CameraError(
            f"distortion_model {model!r} is not read by cubepose: calibrate with plumb_bob or rational_polynomial "
            "(ROS camera_calibration's defaults), or rectify the images and give the rectified camera"
        )
    if distortion is None or model in NO_DISTORTION:
        return None
    values = np.asarray(distortion, dtype=np.float64).reshape(-1)
    if model is not None and values.size != MODELS[model]:
        raise CameraError(f"distortion_model {model} has {MODELS[model]} coefficients, got {values.size}")
    if values.size == 0 or (np.isfinite(values).all() and not values.any()):
        return None
    return values.tolist()


def _text(path: Path) -> str:
    """The file's text, refusing what cannot be a calibration before reading it whole."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CubeposeError(f"{path} is {size:,} bytes, too large for {FORMS}")
        return path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise CubeposeError(f"cannot read the camera file {path} ({err}); give {FORMS}") from None


def _mapping(text: str, path: str | Path) -> dict:
    """The JSON or YAML mapping in ``text``; anything else is a CubeposeError."""
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise CubeposeError(f"{path} is neither JSON nor YAML ({err}); give {FORMS}") from None
    if not isinstance(data, dict):
        raise CubeposeError(f"{path} holds no mapping; give {FORMS}")
    return data


def _ros_calibration_camera(data: dict, path: str | Path) -> Camera:
    """The camera of a ``camera_calibration`` / ``camera_info_manager`` YAML."""
    distortion = data.get("distortion_coefficients")
    return from_opencv(
        _field(data["camera_matrix"].get("data"), "camera_matrix/data", path),
        None if distortion is None else _field(_get(distortion, "data"), "distortion_coefficients/data", path),
        _size(data.get("image_width"), data.get("image_height")),
        _model(data.get("distortion_model"), path),
    )


def _ros_message_camera(data: dict, path: str | Path) -> Camera:
    """The camera of a ``sensor_msgs/CameraInfo`` as ``rostopic echo`` prints it (ROS 2: lower-case keys)."""
    key = "K" if "K" in data else "k"
    distortion = data.get("D", data.get("d"))
    return from_opencv(
        _field(data[key], key, path),
        distortion,
        _size(data.get("width"), data.get("height")),
        _model(data.get("distortion_model"), path),
    )


def _opencv_camera(text: str, path: str | Path) -> Camera:
    """The camera of an OpenCV ``FileStorage`` file (YAML or XML), read by OpenCV itself."""
    import cv2  # here: a second of import time that only OpenCV files pay

    try:
        storage = cv2.FileStorage(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
    except cv2.error as err:
        raise CubeposeError(f"{path} is not a readable OpenCV file ({str(err).strip()}); give {FORMS}") from None
    try:
        matrix = _first_matrix(storage, OPENCV_MATRIX_KEYS)
        if matrix is None:
            raise CubeposeError(f"{path} holds no camera matrix ({', '.join(OPENCV_MATRIX_KEYS)}); give {FORMS}")
        distortion = _first_matrix(storage, OPENCV_DISTORTION_KEYS)
        width, height = (storage.getNode(key).real() for key in ("image_width", "image_height"))
        size = _size(width, height) if width and height else None
        return from_opencv(matrix, distortion, size)
    finally:
        storage.release()


def _first_matrix(storage: Any, keys: tuple[str, ...]) -> np.ndarray | None:
    """The first of ``keys`` an OpenCV FileStorage holds, as an array; None when it holds none."""
    for key in keys:
        node = storage.getNode(key)
        if not node.empty():
            matrix = node.mat() if node.isMap() else None
            if matrix is None and node.isSeq():
                matrix = np.array([node.at(i).real() for i in range(node.size())])
            if matrix is not None:
                return matrix
    return None


def _field(value: Any, key: str, path: str | Path) -> Any:
    """``value`` of ``key``, which must be a list of numbers."""
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise CubeposeError(f"{path}: {key} must be a list of numbers, got {value!r}; give {FORMS}")
    return value


def _get(value: Any, key: str) -> Any:
    """``value[key]`` when ``value`` is a mapping, else None (named by ``_field``)."""
    return value.get(key) if isinstance(value, Mapping) else None


def _model(value: Any, path: str | Path) -> str | None:
    """The ``distortion_model`` string, None when absent."""
    if value is None or isinstance(value, str):
        return value
    raise CubeposeError(f"{path}: distortion_model must be a name such as plumb_bob, got {value!r}")


def _size(width: Any, height: Any) -> tuple[Any, Any] | None:
    """(width, height) when both are given (a zero from an unset ROS field counts as not given)."""
    if width in (None, 0) or height in (None, 0):
        return None
    return (int(width), int(height)) if all(_whole(v) for v in (width, height)) else (width, height)


def _whole(value: Any) -> bool:
    """A finite whole number."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and value == int(value)
