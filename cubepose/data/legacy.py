"""Reader of Unity Perception's legacy (0.x) layout: Dataset<uuid>/captures_NNN.json.

Indexing reads only JSON (no image is opened) and returns a ``PoseIndex``. A single bad
capture is skipped and counted by reason; a dataset with nothing usable is an error.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from cubepose.data.pose_index import PoseIndex
from cubepose.errors import DatasetError

logger = logging.getLogger(__name__)

XYZ = ("x", "y", "z")
XYZW = ("x", "y", "z", "w")
BOX3D_KEYS = ("translation", "rotation", "size")


def find_json_dir(root: Path) -> Path:
    """The folder holding captures_*.json: ``root`` itself or its single Dataset* child."""
    if any(root.glob("captures_*.json")):
        return root
    candidates = sorted(p for p in root.glob("Dataset*") if p.is_dir() and any(p.glob("captures_*.json")))
    if not candidates:
        raise DatasetError(
            f"no captures_*.json under {root} or its Dataset* folders; point the config's "
            "data/<split>/root at the folder of a Unity Perception export"
        )
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise DatasetError(f"{root} holds several Perception datasets ({names}); point the root at one of them")
    return candidates[0]


def load_json(path: Path) -> Any:
    """Parse a JSON file; malformed JSON names the file, line and column."""
    try:
        with open(path, "rb") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"malformed JSON in {path} at line {err.lineno}, column {err.colno}: {err.msg}; "
            "re-export the dataset or fix the file"
        ) from err


def vector(value: Any, keys: tuple[str, ...]) -> list[float] | None:
    """A list ``[x, y, z(, w)]`` or an object ``{"x":.., ...}`` as a list in ``keys`` order."""
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


def _box3d_definition_ids(json_dir: Path) -> set[str] | None:
    """Ids of annotation definitions that describe 3D bounding boxes, if definitions exist."""
    path = json_dir / "annotation_definitions.json"
    if not path.exists():
        return None
    definitions = load_json(path).get("annotation_definitions", [])
    ids = set()
    for definition in definitions:
        name = str(definition.get("name", "")).lower().replace("_", " ")
        if "3d" in name and "box" in name:
            ids.add(str(definition.get("id")))
    return ids


def _looks_like_box3d(values: list) -> bool:
    return bool(values) and all(isinstance(v, dict) and all(k in v for k in BOX3D_KEYS) for v in values)


def _box3d_annotation(capture: dict, box_ids: set[str] | None) -> dict | None:
    """The capture's 3D-box annotation: by definition id when known, else by value shape."""
    for annotation in capture.get("annotations") or []:
        if not isinstance(annotation, dict):
            continue
        definition = str(annotation.get("annotation_definition"))
        values = annotation.get("values")
        if box_ids:
            if definition in box_ids:
                return annotation
        elif _looks_like_box3d(values or []):
            return annotation
    return None


def _select_value(values: list, label_name: str | None, instance_id: int | None) -> tuple[dict | None, str]:
    """The one box value for the configured label, or None and the reason for skipping."""
    if label_name is not None:
        values = [v for v in values if v.get("label_name") == label_name]
        if not values:
            return None, "label not present"
    elif len({v.get("label_name") for v in values}) > 1:
        return None, "several labels (set data/label_name)"
    if instance_id is not None:
        values = [v for v in values if v.get("instance_id") == instance_id]
        if not values:
            return None, "instance not present"
    if len(values) > 1:
        return None, "several instances (set data/instance_id)"
    return values[0], ""


def read_legacy(root: str | os.PathLike, label_name: str | None = None, instance_id: int | None = None) -> PoseIndex:
    """Index a legacy Perception dataset: image paths and poses of the selected object."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"dataset root {root} does not exist; set data/<split>/root to a Unity Perception "
            f"export, or create one with `cubepose generate {root} --count 1000`"
        )
    json_dir = find_json_dir(root)
    box_ids = _box3d_definition_ids(json_dir)
    files = sorted(json_dir.glob("captures_*.json"))

    paths: list[str] = []
    translations: list[list[float]] = []
    rotations: list[list[float]] = []
    skipped: Counter = Counter()
    total = 0
    for path in files:
        for capture in load_json(path).get("captures", []):
            total += 1
            annotation = _box3d_annotation(capture, box_ids)
            if annotation is None:
                skipped["no 3D box annotation"] += 1
                continue
            if not annotation.get("values"):
                skipped["empty annotation"] += 1
                continue
            value, reason = _select_value(annotation["values"], label_name, instance_id)
            if value is None:
                skipped[reason] += 1
                continue
            translation = vector(value.get("translation"), XYZ)
            rotation = vector(value.get("rotation"), XYZW)
            filename = capture.get("filename")
            if translation is None or rotation is None or not isinstance(filename, str):
                skipped["malformed capture"] += 1
                continue
            paths.append(str(root / filename))
            translations.append(translation)
            rotations.append(rotation)

    index = PoseIndex.from_lists(root, "legacy", paths, translations, rotations, skipped, total)
    return index.checked()
