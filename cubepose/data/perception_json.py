"""Pieces both Perception layouts share: JSON parsing, vectors, and picking one labelled box."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cubepose.data.pose_index import IndexBuilder
from cubepose.errors import DatasetError

XYZ = ("x", "y", "z")
XYZW = ("x", "y", "z", "w")


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; malformed JSON names the file, line and column."""
    try:
        with open(path, "rb") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"malformed JSON in {path} at line {err.lineno}, column {err.colno}: {err.msg}; "
            "re-export the dataset or fix the file"
        ) from err
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path} is not UTF-8 JSON ({err.reason}); re-export the dataset") from err


def vector(value: Any, keys: tuple[str, ...]) -> list[float] | None:
    """A list ``[x, y, z(, w)]`` or an object ``{"x":.., ...}`` (any key order) as a list in ``keys`` order."""
    if isinstance(value, dict):
        if not all(k in value for k in keys):
            return None
        value = [value[k] for k in keys]
    if isinstance(value, (list, tuple)) and len(value) == len(keys):
        try:
            return [float(v) for v in value]
        except (TypeError, ValueError):
            return None
    return None


def select_box(
    values: list, label_name: str | None, instance_id: int | None, label_key: str, instance_key: str
) -> tuple[dict | None, str]:
    """The one box value of the configured label (and instance), or None and why the capture is skipped.

    Without ``label_name`` the only label present is used; several instances of the label
    are ambiguous for a single-object model unless ``instance_id`` picks one.
    """
    values = [v for v in values if isinstance(v, dict)]
    if label_name is not None:
        values = [v for v in values if v.get(label_key) == label_name]
        if not values:
            return None, "label not present"
    elif len({v.get(label_key) for v in values}) > 1:
        return None, "several labels (set data/label_name)"
    if instance_id is not None:
        values = [v for v in values if v.get(instance_key) == instance_id]
        if not values:
            return None, "instance not present"
    if len(values) > 1:
        return None, "several instances (set data/instance_id)"
    return values[0], ""


def selected_pose(
    builder: IndexBuilder,
    values: list | None,
    label_name: str | None,
    instance_id: int | None,
    label_key: str,
    instance_key: str,
) -> tuple[list[float], list[float]] | None:
    """Translation and rotation of the selected box among a capture's 3D-box ``values``.

    ``values`` is None when the capture has no 3D-box annotation. A capture that cannot be
    used is counted in ``builder`` by reason and None is returned.
    """
    if values is None:
        builder.skip("no 3D box annotation")
        return None
    if not values:
        builder.skip("empty annotation")
        return None
    builder.labels_seen.update(v.get(label_key) for v in values if isinstance(v, dict))
    value, reason = select_box(values, label_name, instance_id, label_key, instance_key)
    if value is None:
        builder.skip(reason)
        return None
    translation, rotation = vector(value.get("translation"), XYZ), vector(value.get("rotation"), XYZW)
    if translation is None or rotation is None:
        builder.skip("malformed capture")
        return None
    return translation, rotation
