"""Pieces both Perception layouts share: JSON parsing, vectors, and picking one labelled box."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cubepose.data.pose_index import IndexBuilder, Pose
from cubepose.errors import DatasetError

XYZ = ("x", "y", "z")
XYZW = ("x", "y", "z", "w")
# A capture's exact camera [fx, fy, cx, cy] in pixels of its image, written by cubepose generate for a camera given
# in pixels; read before Unity's fields (SOLO's matrix has no principal point, legacy camera_intrinsic is untrusted).
EXACT_INTRINSICS = "cubepose_intrinsics"
DISTORTION = "cubepose_distortion"  # written by cubepose generate for images rendered through a lens
DISTORTION_COEFFICIENTS = 8  # k1 k2 p1 p2 k3 k4 k5 k6


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; malformed JSON names the file, line and column. An integer too long for Python to
    convert (over 4,300 digits) reads as an infinite float, which the readers skip as any non-finite value."""
    try:
        with open(path, "rb") as handle:
            return json.load(handle, parse_int=bounded_int)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"malformed JSON in {path} at line {err.lineno}, column {err.colno}: {err.msg}; "
            "re-export the dataset or fix the file"
        ) from err
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path} is not UTF-8 JSON ({err.reason}); re-export the dataset") from err
    except OSError as err:
        raise DatasetError(f"cannot read {path}: {err.strerror or err}; check the file's permissions") from None
    except RecursionError:
        raise DatasetError(f"{path} nests JSON too deeply to be a Perception file; re-export the dataset") from None


def bounded_int(digits: str) -> int | float:
    """A JSON integer literal as an int, or +-inf when Python refuses to convert that many digits."""
    try:
        return int(digits)
    except ValueError:
        return float("-inf") if digits.startswith("-") else float("inf")


def as_list(value: Any) -> list:
    """``value`` if it is a JSON array, else an empty list: a malformed field holds nothing usable."""
    return value if isinstance(value, list) else []


def label_of(value: dict, key: str) -> Any:
    """A box's label or instance id as a hashable value (a malformed list or object becomes its text)."""
    label = value.get(key)
    return label if label is None or isinstance(label, (str, int, float)) else repr(label)


def vector(value: Any, keys: tuple[str, ...]) -> list[float] | None:
    """A list ``[x, y, z(, w)]`` or an object ``{"x":.., ...}`` (any key order) as a list in ``keys`` order."""
    if isinstance(value, dict):
        if not all(k in value for k in keys):
            return None
        value = [value[k] for k in keys]
    if isinstance(value, (list, tuple)) and len(value) == len(keys) and all(map(is_number, value)):
        return [as_float(v) for v in value]
    return None


def as_float(value: int | float) -> float:
    """``float(value)``, with integers too large for a float as infinity (then skipped as non-finite)."""
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def is_number(value: Any) -> bool:
    """A JSON number: int or float, not a boolean (``true`` is not a coordinate) nor a numeric string.

    json.load makes exact ints and floats, so an exact type test suffices (bool is a subclass of int).
    """
    return type(value) in (int, float)


def exact_intrinsics(capture: dict) -> list[float] | None:
    """The capture's ``cubepose_intrinsics`` as [fx, fy, cx, cy], or None when absent or not a usable camera."""
    values = capture.get(EXACT_INTRINSICS)
    if not (isinstance(values, list) and len(values) == 4 and all(map(is_number, values))):
        return None
    fx, fy, cx, cy = (as_float(v) for v in values)
    usable = all(math.isfinite(v) for v in (fx, fy, cx, cy)) and fx > 0 and fy > 0
    return [fx, fy, cx, cy] if usable else None


def exact_distortion(capture: dict) -> list[float] | None:
    """The capture's ``cubepose_distortion`` (the lens cubepose generate rendered through: OpenCV's k1 k2 p1 p2 k3
    k4 k5 k6) as 8 floats, or None when absent or not 8 finite numbers."""
    values = capture.get(DISTORTION)
    if not (isinstance(values, list) and len(values) == DISTORTION_COEFFICIENTS and all(map(is_number, values))):
        return None
    numbers = [as_float(v) for v in values]
    return numbers if all(math.isfinite(v) for v in numbers) else None


def select_boxes(
    values: list,
    label_name: str | None,
    instance_id: int | None,
    label_key: str,
    instance_key: str,
    max_instances: int = 1,
    label_setting: str = "data/label_name",
) -> tuple[list[dict] | None, str]:
    """The box values of the configured label (and instance), or None and why the capture is skipped.

    Without ``label_name`` the only label present is used (several: the reason names ``label_setting``).
    A single-object dataset (``max_instances`` 1)
    takes exactly one instance, so several are ambiguous unless ``instance_id`` picks one; with more, every
    instance up to ``max_instances`` is kept, and a capture without the label holds none.
    """
    values = [v for v in values if isinstance(v, dict)]
    if not values and max_instances == 1:
        return None, "malformed capture"
    if label_name is not None:
        values = [v for v in values if label_of(v, label_key) == label_name]
        if not values and max_instances == 1:
            return None, "label not present"
    elif len({label_of(v, label_key) for v in values}) > 1:
        return None, f"several labels (set {label_setting})"
    if instance_id is not None:
        values = [v for v in values if label_of(v, instance_key) == instance_id]
        if not values and max_instances == 1:
            return None, "instance not present"
    if len(values) > max_instances:
        if max_instances == 1:
            return None, "several instances (set data/instance_id or data/max_instances)"
        return None, "more instances than data/max_instances"
    return values, ""


def selected_poses(
    builder: IndexBuilder,
    values: list | None,
    label_name: str | None,
    instance_id: int | None,
    label_key: str,
    instance_key: str,
    max_instances: int = 1,
) -> list[Pose] | None:
    """Translation, rotation and edge lengths (None when not recorded) of the selected boxes among a capture's
    3D-box ``values`` (``select_boxes``).

    ``values`` is None when the capture has no 3D-box annotation. A capture that cannot be
    used is counted in ``builder`` by reason and None is returned.
    """
    if values is None:
        builder.skip("no 3D box annotation")
        return None
    if not isinstance(values, list):
        builder.skip("malformed capture")
        return None
    if not values and max_instances == 1:
        builder.skip("empty annotation")
        return None
    builder.labels_seen.update(label_of(v, label_key) for v in values if isinstance(v, dict))
    selected, reason = select_boxes(values, label_name, instance_id, label_key, instance_key, max_instances)
    if selected is None:
        builder.skip(reason)
        return None
    poses = []
    for value in selected:
        if value.get("translation") is None or value.get("rotation") is None:
            builder.skip("malformed capture")
            return None
        translation, rotation = vector(value["translation"], XYZ), vector(value["rotation"], XYZW)
        if translation is None or rotation is None:
            builder.skip("pose not numbers")
            return None
        poses.append(Pose(translation, rotation, vector(value.get("size"), XYZ)))
    return poses
