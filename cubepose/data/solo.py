"""Reader of Unity Perception's SOLO layout (1.0+): sequence.N/stepK.frame_data.json.

Keys are camelCase; captures and annotations are chosen by ``@type``. Each RGB capture
records its projection ``matrix`` and ``dimension``, which give the intrinsics of a centred
camera exactly; cubepose generate adds ``cubepose_intrinsics`` for any camera, read first.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from cubepose.data.containment import Boundary
from cubepose.data.perception_json import (
    as_float,
    as_list,
    exact_distortion,
    exact_intrinsics,
    is_number,
    load_json,
    selected_poses,
)
from cubepose.data.pose_index import IndexBuilder, PoseIndex

_SEQUENCE = re.compile(r"sequence\.(\d+)$", re.ASCII)
_STEP = re.compile(r"step(\d+)\.frame_data\.json$", re.ASCII)
BOX3D_TYPE_SUFFIX = "BoundingBox3DAnnotation"
CAMERA_TYPE_SUFFIX = "Camera"
FLOAT32_MAX = float(np.finfo(np.float32).max)


def sequence_entries(root: Path) -> list[os.DirEntry]:
    """sequence.N folders in numeric order."""
    found = [(int(m.group(1)), e) for e in os.scandir(root) if (m := _SEQUENCE.match(e.name)) and e.is_dir()]
    return [entry for _, entry in sorted(found, key=lambda pair: pair[0])]


def is_solo(root: Path) -> bool:
    """Whether ``root`` holds sequence.N folders."""
    return bool(sequence_entries(root)) if root.is_dir() else False


def frame_entries(sequence: str) -> list[os.DirEntry]:
    """stepK.frame_data.json of one sequence in numeric step order."""
    found = [(int(m.group(1)), e) for e in os.scandir(sequence) if (m := _STEP.match(e.name))]
    return [entry for _, entry in sorted(found, key=lambda pair: pair[0])]


def _is_rgb_capture(capture: object) -> bool:
    if not isinstance(capture, dict):
        return False
    kind = capture.get("@type")
    return str(kind).endswith(CAMERA_TYPE_SUFFIX) if kind is not None else "filename" in capture


def _box3d_values(capture: dict) -> list | None:
    for annotation in as_list(capture.get("annotations")):
        if isinstance(annotation, dict) and str(annotation.get("@type", "")).endswith(BOX3D_TYPE_SUFFIX):
            return annotation.get("values") or []
    return None


def _camera(capture: dict) -> tuple[list[float], list[float]] | None:
    """Projection entries (m00, m11) and image (width, height) of a perspective capture, or None.

    None too when they are not numbers, not finite in float32 or not positive: no camera, no pose.
    """
    matrix, dimension = capture.get("matrix"), capture.get("dimension")
    if str(capture.get("projection", "Perspective")).lower() != "perspective":
        return None
    if not (isinstance(matrix, list) and len(matrix) >= 5 and isinstance(dimension, list) and len(dimension) == 2):
        return None
    values = [matrix[0], matrix[4], *dimension]
    if not all(map(is_number, values)):
        return None
    m00, m11, width, height = (as_float(v) for v in values)
    if not all(0 < v <= FLOAT32_MAX for v in (m00, m11, width, height)):  # positive, and finite in float32
        return None
    return [m00, m11], [width, height]


def read_solo(
    root: str | os.PathLike, label_name: str | None = None, instance_id: int | None = None, max_instances: int = 1
) -> PoseIndex:
    """Index a SOLO dataset: one example per RGB capture holding the selected object (or, with ``max_instances``
    above 1, up to that many instances of it, or none)."""
    root = Path(root)
    builder = IndexBuilder(root, "solo")
    boundary = Boundary(root)
    for sequence in sequence_entries(root):
        if not boundary.holds_entry(sequence):
            builder.outside_label_file(sequence.path)
            continue
        for entry in frame_entries(sequence.path):
            if not boundary.holds_entry(entry):
                builder.outside_label_file(entry.path)
                continue
            frame = load_json(entry.path)
            captures = frame.get("captures") if isinstance(frame, dict) else None
            for capture in as_list(captures):
                if not _is_rgb_capture(capture):
                    continue
                builder.total += 1
                _add_capture(builder, sequence.path, capture, label_name, instance_id, max_instances)
    return builder.build(max_instances)


def _add_capture(
    builder: IndexBuilder,
    sequence: str,
    capture: dict,
    label_name: str | None,
    instance_id: int | None,
    max_instances: int,
) -> None:
    values = _box3d_values(capture)
    poses = selected_poses(builder, values, label_name, instance_id, "labelName", "instanceId", max_instances)
    if poses is None:
        return
    camera, filename = _camera(capture), capture.get("filename")
    if not isinstance(filename, str):
        builder.skip("malformed capture")
    elif camera is None:
        builder.skip("no usable perspective camera matrix")
    else:
        lens = exact_distortion(capture)
        builder.add(os.path.join(sequence, filename), poses, *camera, intrinsics=exact_intrinsics(capture), lens=lens)
