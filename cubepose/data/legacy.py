"""Reader of Unity Perception's legacy (0.x) layout: Dataset<uuid>/captures_NNN.json.

Indexing reads only JSON (images are checked, not decoded). The 3D-box annotation is
chosen by its definition, or by the shape of its values, never by position. Legacy
``camera_intrinsic`` is unreliable, so cameras come from the config (``cubepose.data.camera``),
except where cubepose generate recorded the exact camera (``cubepose_intrinsics``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cubepose.data.containment import Boundary, is_plain_relative
from cubepose.data.perception_json import as_list, exact_distortion, exact_intrinsics, load_json, selected_poses
from cubepose.data.pose_index import IndexBuilder, PoseIndex
from cubepose.errors import DatasetError

BOX3D_KEYS = ("translation", "rotation", "size")
_CAPTURES_NUMBER = re.compile(r"captures_(\d+)\.json$", re.ASCII)


def is_legacy(root: Path) -> bool:
    """Whether ``root`` holds captures_*.json itself or in a Dataset* folder."""
    return any(root.glob("captures_*.json")) or any(root.glob("Dataset*/captures_*.json"))


def find_json_dir(root: Path) -> Path:
    """The folder holding captures_*.json: ``root`` itself or its single Dataset* child."""
    if any(root.glob("captures_*.json")):
        return root
    candidates = sorted(p for p in root.glob("Dataset*") if p.is_dir() and any(p.glob("captures_*.json")))
    if not candidates:
        raise DatasetError(
            f"no captures_*.json under {root} or its Dataset* folders; point data/<split>/root at the "
            "folder of a Unity Perception export"
        )
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise DatasetError(f"{root} holds several Perception datasets ({names}); point the root at one of them")
    return candidates[0]


def captures_files(json_dir: Path) -> list[os.DirEntry]:
    """captures_NNN.json in numeric order (captures_1000 after captures_999)."""
    files = [(int(m.group(1)), e) for e in os.scandir(json_dir) if (m := _CAPTURES_NUMBER.search(e.name))]
    return [entry for _, entry in sorted(files, key=lambda pair: pair[0])]


def box3d_definition_ids(json_dir: Path, boundary: Boundary) -> set[str]:
    """Ids (as strings: ints in old exports, UUIDs in new) of definitions naming a 3D bounding box."""
    path = json_dir / "annotation_definitions.json"
    if not path.exists():
        return set()
    if not boundary.holds(path):
        raise DatasetError(f"{path} links outside the dataset; copy the file into it")
    definitions = load_json(path)
    if not isinstance(definitions, dict):
        raise DatasetError(f"{path} is not a Perception annotation_definitions file; re-export the dataset")
    ids = set()
    for definition in as_list(definitions.get("annotation_definitions")):
        if not isinstance(definition, dict):
            continue
        name = str(definition.get("name", "")).lower().replace("_", " ")
        if "3d" in name and "box" in name:
            ids.add(str(definition.get("id")))
    return ids


def _looks_like_box3d(values: list) -> bool:
    return bool(values) and all(isinstance(v, dict) and all(k in v for k in BOX3D_KEYS) for v in values)


def box3d_annotation(capture: dict, box_ids: set[str]) -> dict | None:
    """The capture's 3D-box annotation: by definition id when definitions name one, else by value shape."""
    for annotation in as_list(capture.get("annotations")):
        if not isinstance(annotation, dict):
            continue
        if box_ids:
            if str(annotation.get("annotation_definition")) in box_ids:
                return annotation
        elif _looks_like_box3d(as_list(annotation.get("values"))):
            return annotation
    return None


def _image_bases(root: Path, json_dir: Path) -> tuple[Path, ...]:
    """The folders capture filenames may be relative to, in order of preference, all inside the dataset.

    The folder above Dataset<uuid> (the root, or the root's parent when the root is the Dataset folder
    itself: the images are in its sibling RGB folder), or the JSON folder of a flattened export. A
    flattened export's parent is not the dataset (a zip's folder, the download cache), so never a base.
    """
    if json_dir != root or root.name.startswith("Dataset"):
        return (json_dir.parent, json_dir)
    return (json_dir,)


def _image_base(bases: tuple[Path, ...], first_filename: str) -> Path:
    """The first of ``bases`` that holds the first capture's image (images must stay inside it)."""
    for base in bases:
        if (base / first_filename).exists():
            return base
    return bases[0]


def read_legacy(
    root: str | os.PathLike, label_name: str | None = None, instance_id: int | None = None, max_instances: int = 1
) -> PoseIndex:
    """Index a legacy Perception dataset: image paths and poses of the selected object (or, with
    ``max_instances`` above 1, of up to that many instances of it, or none)."""
    root = Path(root)
    boundary = Boundary(root)
    json_dir = find_json_dir(root)
    if not boundary.holds(json_dir):
        raise DatasetError(f"{json_dir} links outside the dataset {root}; copy the folder into it")
    box_ids = box3d_definition_ids(json_dir, boundary)
    builder = IndexBuilder(root, "legacy")
    bases = _image_bases(root, json_dir)
    base = None
    for entry in captures_files(json_dir):
        if not boundary.holds_entry(entry):
            builder.outside_label_file(entry.path)
            continue
        path = entry.path
        document = load_json(path)
        captures = document.get("captures") if isinstance(document, dict) else None
        if not isinstance(captures, list):
            raise DatasetError(f"{path} has no 'captures' list; is it a Perception captures file?")
        for capture in captures:
            builder.total += 1
            filename = capture.get("filename") if isinstance(capture, dict) else None
            if not isinstance(filename, str):
                builder.skip("malformed capture")
                continue
            if base is None and is_plain_relative(filename):
                base = _image_base(bases, filename)
            annotation = box3d_annotation(capture, box_ids)
            values = None if annotation is None else annotation.get("values") or []
            keys = ("label_name", "instance_id")
            poses = selected_poses(builder, values, label_name, instance_id, *keys, max_instances)
            if poses is not None:
                exact = {"intrinsics": exact_intrinsics(capture), "lens": exact_distortion(capture)}
                builder.add(os.path.join(base or bases[0], filename), poses, **exact)
    builder.image_root = base or bases[0]
    return builder.build(max_instances)
