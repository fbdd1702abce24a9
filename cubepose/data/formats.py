"""Finding a dataset under a folder, detecting its layout (Perception legacy or SOLO, or BOP), and reading it.

A root may be the dataset itself, a folder wrapping it (a zip of the export folder), or a folder
of ``shard-K-of-N`` sub-datasets (cubepose.data.shards), read as one; ``data/format`` forces a
layout when detection is ambiguous.
"""

from __future__ import annotations

import os
from pathlib import Path

from cubepose.config import defaults
from cubepose.data.bop import is_bop, read_bop
from cubepose.data.camera import with_config_camera
from cubepose.data.legacy import is_legacy, read_legacy
from cubepose.data.pose_index import PoseIndex
from cubepose.data.shards import concatenate, shard_folders, visible_entries
from cubepose.data.solo import is_solo, read_solo
from cubepose.errors import DatasetError

FORMATS = ("auto", "legacy", "solo", "bop")
DETECTORS = {"legacy": is_legacy, "solo": is_solo, "bop": is_bop}
READERS = {"legacy": read_legacy, "solo": read_solo}  # BOP's reader also takes data/obj_id


def _layouts(path: Path) -> list[str]:
    return [name for name, detect in DETECTORS.items() if detect(path)]


def _wrapped_dataset(root: Path) -> Path | None:
    """The single visible sub-folder of ``root`` when ``root`` holds nothing else (a zipped export folder)."""
    entries = visible_entries(root)
    if len(entries) == 1 and entries[0].is_dir():
        return Path(entries[0].path)
    return None


def locate_dataset(root: str | os.PathLike, fmt: str = "auto") -> tuple[str, Path]:
    """The layout ("legacy", "solo" or "bop") and folder of the dataset at ``root``."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(
            f"dataset root {root} does not exist; set data/<split>/root to a Unity Perception export or BOP split "
            f"(a folder, a .zip, gs:// or s3://bucket/path), or create one with `cubepose generate {root} --count 1000`"
        )
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is a file; give a dataset folder, a .zip or a gs:// or s3:// URL")
    for path in (root, _wrapped_dataset(root)):
        if path is None:
            continue
        found = _layouts(path)
        if fmt != "auto":
            if fmt in found:
                return fmt, path
            continue
        if len(found) == 1:
            return found[0], path
        if len(found) > 1:
            raise DatasetError(f"{path} holds {' and '.join(found)} data; set data/format to one of them")
    wanted = {"auto": "a legacy, SOLO or BOP", "legacy": "a legacy", "solo": "a SOLO", "bop": "a BOP"}[fmt]
    raise DatasetError(
        f"no captures found in {root}: expected {wanted} dataset (Dataset*/captures_NNN.json, "
        "sequence.N/stepK.frame_data.json or NNNNNN/scene_gt.json); point data/<split>/root at the export"
        + ("" if fmt == "auto" else " or set data/format: auto")
    )


def read_dataset(
    root: str | os.PathLike,
    fmt: str = "auto",
    label_name: str | None = None,
    instance_id: int | None = None,
    camera: dict | None = None,
    max_instances: int = 1,
    obj_id: int | None = None,
) -> PoseIndex:
    """Index the dataset (or every shard of it) at local folder ``root``; legacy examples without a recorded
    camera get ``camera`` (``data/camera``); examples hold up to ``max_instances`` instances (of BOP's
    ``obj_id``)."""
    index = read_recorded(root, fmt, label_name, instance_id, max_instances, obj_id)
    if index.format == "legacy":
        index = with_config_camera(index, camera or defaults()["data"]["camera"])
    return index


def read_recorded(
    root: str | os.PathLike,
    fmt: str = "auto",
    label_name: str | None = None,
    instance_id: int | None = None,
    max_instances: int = 1,
    obj_id: int | None = None,
) -> PoseIndex:
    """Index the dataset (or every shard of it) at local folder ``root`` with the cameras its captures record
    (NaN for legacy captures without ``cubepose_intrinsics``)."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")
    root = Path(root)
    shards = shard_folders(root) if root.is_dir() else None
    if shards:
        parts = [read_recorded(shard, fmt, label_name, instance_id, max_instances, obj_id) for shard in shards]
        return concatenate(root, parts)
    layout, path = locate_dataset(root, fmt)
    if layout == "bop":
        return read_bop(path, label_name, instance_id, max_instances, obj_id)
    return READERS[layout](path, label_name=label_name, instance_id=instance_id, max_instances=max_instances)
