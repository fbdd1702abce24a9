"""Reader of the BOP benchmark's dataset format: ``<split>/<scene>/scene_gt.json``, ``scene_camera.json``, ``rgb/``.

A root is a split folder (``train_pbr``, ``test``: six-digit scene folders) or a dataset folder holding one
split beside ``models/``; ``models/models_info.json`` of the dataset (the split's parent) gives the object's
size and symmetries. The object is chosen by ``obj_id`` (``data/obj_id``; null: the only one).

Frames: a BOP pose maps model points to OpenCV's camera frame (x right, y down, z forward) in millimetres.
cubepose's camera frame has y up, so a pose (R, t) reads as (F R F, F t / 1000) with F = diag(1, -1, 1): the
model's y axis is mirrored too, which leaves a box centred on its origin the same box, and makes
``cubepose.models.codecs.keypoints``' OpenCV recipe hold. ``cam_K``'s principal point is OpenCV's (pixel centres on
integers); cubepose puts pixel centres half a pixel in, so cx and cy read 0.5 larger.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from cubepose.data.containment import Boundary
from cubepose.data.perception_json import as_float, is_number, label_of, load_json, select_boxes
from cubepose.data.pose_index import IndexBuilder, Pose, PoseIndex
from cubepose.errors import DatasetError
from cubepose.geometry.projection import OPENCV_AXES
from cubepose.geometry.rotations import quaternion_to_matrix

SCENE_FOLDER = re.compile(r"\d{6}$", re.ASCII)
IMAGE_NAME = re.compile(r"(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE | re.ASCII)
MIRROR_Y = np.diag(OPENCV_AXES)
MM = 1000.0
PIXEL_CENTRE = 0.5  # cubepose's principal point minus OpenCV's
ROTATION_TOLERANCE = 1e-3  # |R Rᵀ - I| and |det R - 1| above this: not a rotation
MAX_ID_DIGITS = 18  # an image id int64 holds
MODELS_INFO = ("models/models_info.json", "models_eval/models_info.json")


def scene_folders(split: Path) -> list[str]:
    """Six-digit scene folders of a split holding ``scene_gt.json``, in numeric order."""
    if not split.is_dir():
        return []
    found = [
        entry.path
        for entry in os.scandir(split)
        if SCENE_FOLDER.match(entry.name)
        and entry.is_dir()
        and os.path.isfile(os.path.join(entry.path, "scene_gt.json"))
    ]
    return sorted(found)


def split_folders(root: Path) -> list[Path]:
    """``root`` itself when it holds scenes, else its sub-folders that do (the splits of a dataset folder)."""
    if scene_folders(root):
        return [root]
    if not root.is_dir():
        return []
    return sorted(Path(entry.path) for entry in os.scandir(root) if entry.is_dir() and scene_folders(Path(entry.path)))


def is_bop(root: Path) -> bool:
    """Whether ``root`` is a BOP split, or a dataset folder holding splits."""
    return bool(split_folders(root))


def models_info_path(split: Path) -> Path | None:
    """The dataset's ``models_info.json`` (in the split's parent), or None; DatasetError when it links outside."""
    dataset = Boundary(split.parent)
    for relative in MODELS_INFO:
        path = split.parent / relative
        if path.is_file():
            if not dataset.holds(path):
                raise DatasetError(f"{path} links outside the dataset {split.parent}; copy the file into it")
            return path
    return None


def object_info(split: Path, obj_id: int) -> dict | None:
    """``models_info.json``'s entry for ``obj_id``, or None without the file; DatasetError for a bad entry."""
    path = models_info_path(split)
    if path is None:
        return None
    info = load_json(path)
    entry = info.get(str(obj_id)) if isinstance(info, dict) else None
    if not isinstance(entry, dict):
        known = ", ".join(sorted(info, key=str)) if isinstance(info, dict) else "none"
        raise DatasetError(f"{path} has no entry for obj_id {obj_id} (objects: {known}); set data/obj_id to one")
    sizes = [entry.get(key) for key in ("size_x", "size_y", "size_z")]
    if not all(is_number(v) and 0 < as_float(v) < math.inf for v in sizes):
        raise DatasetError(f"{path}: obj_id {obj_id} needs positive size_x, size_y and size_z in millimetres")
    return entry


def object_size(entry: dict) -> list[float]:
    """The box edge lengths (m) of a ``models_info.json`` entry."""
    return [as_float(entry[key]) / MM for key in ("size_x", "size_y", "size_z")]


def declared_symmetries(entry: dict, where: str) -> np.ndarray:
    """(S, 4) quaternions x, y, z, w in cubepose's frame of the entry's ``symmetries_discrete`` (identity first;
    the translations, zero for a centred object, are ignored). Continuous symmetries are refused: cubepose
    takes discrete ones (``object/symmetries``)."""
    if entry.get("symmetries_continuous"):
        raise DatasetError(
            f"{where} declares continuous symmetries, which cubepose does not model; give object/symmetries a "
            "discrete list of rotations about the axis (e.g. every 10 degrees) and remove them from the file"
        )
    matrices = [np.eye(3)]
    for values in entry.get("symmetries_discrete") or []:
        if not (isinstance(values, list) and len(values) == 16 and all(map(is_number, values))):
            raise DatasetError(f"{where}: each symmetries_discrete entry must be 16 numbers (a 4x4 matrix)")
        matrices.append(np.array(values, dtype=np.float64).reshape(4, 4)[:3, :3])
    rotations = MIRROR_Y @ np.stack(matrices) @ MIRROR_Y
    if not _are_rotations(rotations).all():
        raise DatasetError(f"{where}: a symmetries_discrete entry is not a rotation")
    return _quaternions(rotations)


def _quaternions(rotations: np.ndarray) -> np.ndarray:
    """Unit quaternions (K, 4) x, y, z, w of rotation matrices (K, 3, 3), by roma (imported here: the generator's
    worker processes write BOP poses without loading torch)."""
    import roma
    import torch

    return roma.rotmat_to_unitquat(torch.from_numpy(np.ascontiguousarray(rotations, dtype=np.float64))).numpy()


def _are_rotations(matrices: np.ndarray) -> np.ndarray:
    orthogonal = np.abs(matrices @ np.swapaxes(matrices, -1, -2) - np.eye(3)).max(axis=(-2, -1)) < ROTATION_TOLERANCE
    return orthogonal & (np.abs(np.linalg.det(matrices) - 1) < ROTATION_TOLERANCE)


def cubepose_poses(rotations_m2c: np.ndarray, translations_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BOP poses (K, 3, 3) and (K, 3) mm as cubepose's translations (K, 3) m and quaternions (K, 4) x, y, z, w."""
    rotations = MIRROR_Y @ rotations_m2c @ MIRROR_Y
    return translations_mm @ MIRROR_Y / MM, _quaternions(rotations)


def bop_poses(translations: np.ndarray, quaternions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cubepose's translations (K, 3) m and quaternions (K, 4) as BOP's R (K, 3, 3) and t (K, 3) mm."""
    matrices = quaternion_to_matrix(np.asarray(quaternions, dtype=np.float64))
    return MIRROR_Y @ matrices @ MIRROR_Y, np.asarray(translations, dtype=np.float64) @ MIRROR_Y * MM


def bop_intrinsics(fx: float, fy: float, cx: float, cy: float) -> list[float]:
    """cubepose's camera as BOP's row-major ``cam_K``."""
    return [fx, 0.0, cx - PIXEL_CENTRE, 0.0, fy, cy - PIXEL_CENTRE, 0.0, 0.0, 1.0]


def _intrinsics(camera: object) -> list[float] | None:
    """fx, fy, cx, cy (cubepose's pixel centres) of a ``scene_camera.json`` entry, or None when unusable."""
    values = camera.get("cam_K") if isinstance(camera, dict) else None
    if not (isinstance(values, list) and len(values) == 9 and all(map(is_number, values))):
        return None
    k = [as_float(v) for v in values]
    fx, fy, cx, cy = k[0], k[4], k[2] + PIXEL_CENTRE, k[5] + PIXEL_CENTRE
    usable = all(math.isfinite(v) for v in (fx, fy, cx, cy)) and fx > 0 and fy > 0
    return [fx, fy, cx, cy] if usable else None


def is_image_id(key: str) -> bool:
    """Whether a ``scene_gt.json`` key is an image id: ASCII digits of a size ``int`` takes (``"²"`` is a digit
    to ``str.isdigit`` and not to ``int``)."""
    return key.isascii() and key.isdigit() and len(key) <= MAX_ID_DIGITS


def _numbers(value: object, count: int) -> list[float] | None:
    if isinstance(value, list) and len(value) == count and all(map(is_number, value)):
        return [as_float(v) for v in value]
    return None


def read_bop(
    root: str | os.PathLike,
    label_name: str | None = None,
    instance_id: int | None = None,
    max_instances: int = 1,
    obj_id: int | None = None,
) -> PoseIndex:
    """Index a BOP split: one example per image holding the chosen object (or, with ``max_instances`` above 1,
    up to that many instances of it, or none)."""
    if label_name is not None:
        raise DatasetError("BOP datasets pick the object by data/obj_id: leave data/label_name null")
    if instance_id is not None:
        raise DatasetError("BOP datasets number no instances: leave data/instance_id null (data/max_instances)")
    splits = split_folders(Path(root))
    if len(splits) != 1:
        names = ", ".join(split.name for split in splits) or "none"
        raise DatasetError(f"{root} holds the BOP splits {names}; point data/<split>/root at one of them")
    split, boundary = splits[0], Boundary(root)
    if not boundary.holds(split):
        raise DatasetError(f"{split} links outside the dataset {root}; copy the split into it")
    builder = IndexBuilder(split, "bop")
    for scene in scene_folders(split):
        labels = [os.path.join(scene, name) for name in ("scene_gt.json", "scene_camera.json")]
        if not all(boundary.holds(path) for path in (scene, *labels)):
            builder.outside_label_file(scene)
            continue
        _add_scene(builder, Path(scene), obj_id, max_instances)
    index = builder.build(max_instances)
    chosen = obj_id if obj_id is not None else _only_object(index)
    entry = object_info(split, chosen) if chosen is not None else None
    if entry is None:
        return index
    sizes = np.where(index.present[..., None], object_size(entry), np.nan)
    where = f"{models_info_path(split)} (obj_id {chosen})"
    return index.with_object(sizes, declared_symmetries(entry, where))


def _only_object(index: PoseIndex) -> int | None:
    ids = [label for label in index.labels_seen if isinstance(label, int)]
    return ids[0] if len(ids) == 1 else None


def _add_scene(builder: IndexBuilder, scene: Path, obj_id: int | None, max_instances: int) -> None:
    """Every image of one scene: ground truths selected and checked per image, converted in one batch."""
    ground_truth = load_json(scene / "scene_gt.json")
    cameras = load_json(scene / "scene_camera.json") if (scene / "scene_camera.json").is_file() else {}
    if not isinstance(ground_truth, dict) or not isinstance(cameras, dict):
        raise DatasetError(f"{scene}: scene_gt.json and scene_camera.json must map image ids to entries")
    images = {}
    if (scene / "rgb").is_dir():
        images = {int(m.group(1)): m.group(0) for e in os.scandir(scene / "rgb") if (m := IMAGE_NAME.match(e.name))}
    usable = []  # (image path, intrinsics, rotations, translations) of each usable image
    for key, gts in ground_truth.items():
        builder.total += 1
        if not (is_image_id(key) and isinstance(gts, list)):
            builder.skip("malformed capture")
            continue
        entries = [gt for gt in gts if isinstance(gt, dict)]
        if not all(type(gt.get("obj_id")) is int for gt in entries):  # noqa: E721 - not bool, not a float
            builder.skip("obj_id not an integer")
            continue
        builder.labels_seen.update(label_of(gt, "obj_id") for gt in entries)
        selected, reason = select_boxes(entries, obj_id, None, "obj_id", "", max_instances, "data/obj_id")
        if selected is None:
            builder.skip(reason)
            continue
        rotations = [_numbers(gt.get("cam_R_m2c"), 9) for gt in selected]
        translations = [_numbers(gt.get("cam_t_m2c"), 3) for gt in selected]
        intrinsics = _intrinsics(cameras.get(key))
        if any(v is None for v in rotations + translations):
            builder.skip("pose not numbers")
        elif intrinsics is None:
            builder.skip("no usable camera (cam_K)")
        else:
            image = images.get(int(key), f"{int(key):06d}.png")  # a missing image is counted by the index check
            usable.append((os.path.join(scene, "rgb", image), intrinsics, rotations, translations))
    counts = np.array([len(rotations) for _, _, rotations, _ in usable], dtype=np.int64)
    matrices = np.array([r for *_, rotations, _ in usable for r in rotations], dtype=np.float64).reshape(-1, 3, 3)
    millimetres = np.array([t for *_, translations in usable for t in translations], dtype=np.float64).reshape(-1, 3)
    rotation_ok = np.isfinite(matrices).all(axis=(1, 2))
    rotation_ok[rotation_ok] = _are_rotations(matrices[rotation_ok])
    metres, quaternions = cubepose_poses(np.where(rotation_ok[:, None, None], matrices, np.eye(3)), millimetres)
    ends = np.cumsum(counts)
    for (path, intrinsics, _, _), end, count in zip(usable, ends, counts, strict=True):
        if not rotation_ok[end - count : end].all():
            builder.skip("rotation not a rotation matrix")
            continue
        poses = [
            Pose(list(t), list(q))
            for t, q in zip(metres[end - count : end], quaternions[end - count : end], strict=True)
        ]
        builder.add(path, poses, intrinsics=intrinsics)
