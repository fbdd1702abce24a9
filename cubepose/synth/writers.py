"""The dataset layouts ``cubepose generate`` writes: Unity Perception's (legacy 0.x and SOLO) and BOP's.

A layout names each frame's files, writes the per-frame labels (SOLO: one JSON per frame,
written by the worker that rendered it) and, at the end, the dataset-wide files (legacy:
captures_NNN.json from all labels). Both record the cube's 3D box (pose and edge lengths) in the
camera frame and the camera as Unity writes it (legacy: ``camera_intrinsic``; SOLO: ``matrix`` and
``dimension``). A camera given in pixels (``--camera``) is also recorded exactly, as
``cubepose_intrinsics: [fx, fy, cx, cy]`` on the capture, which cubepose's readers prefer: Unity's
matrix has no principal point, and legacy ``camera_intrinsic`` is not trusted. BOP's layout
(``BopLayout``) records poses and cameras in its own convention (``cubepose.data.bop``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cubepose.data.bop import bop_intrinsics, bop_poses
from cubepose.geometry.object import box_corners
from cubepose.geometry.projection import intrinsics_from_fov, projection_from_fov, projection_from_intrinsics
from cubepose.geometry.symmetries import box_rotations
from cubepose.io.atomic import atomic_write_text

CAPTURES_PER_FILE = 150  # as Perception 0.x writes them
BOX3D_DEFINITION_NAME = "bounding box 3D"
LABEL_NAME = "cube_position"
SOLO_RGB_TYPE = "type.unity.com/unity.solo.RGBCamera"
SOLO_BOX3D_TYPE = "type.unity.com/unity.solo.BoundingBox3DAnnotation"
FAR_CLIP_M22 = -1.0006  # Unity's m22 for near 0.3 m / far 1000 m; unused by the reader
EXACT_INTRINSICS = "cubepose_intrinsics"  # capture key: [fx, fy, cx, cy] in pixels, read before Unity's camera fields
DISTORTION = "cubepose_distortion"  # capture key: the lens's k1 k2 p1 p2 k3 k4 k5 k6 (OpenCV's), when there is one
BOP_SPLIT = "train"  # the split folder of a generated BOP dataset (--bop-split)
BOP_IMAGES_PER_SCENE = 1000  # as BOP's PBR training data
BOP_OBJ_ID = 1


@dataclass(frozen=True)
class FrameLabel:
    """What a frame's labels record: the poses of the object's instances (``translations`` (n, 3) metres and
    ``quaternions`` (n, 4) x, y, z, w; n = 0 for an empty image), its edge lengths (m) and the camera that saw it.

    The camera is either a centred one of ``vertical_fov_deg`` or, given in pixels, ``intrinsics`` (fx, fy, cx, cy).
    """

    index: int
    translations: np.ndarray
    quaternions: np.ndarray
    vertical_fov_deg: float | None
    width: int
    height: int
    size: tuple[float, float, float]
    intrinsics: tuple[float, float, float, float] | None = None
    distortion: tuple[float, ...] | None = None  # the lens's k1 k2 p1 p2 k3 k4 k5 k6, when rendered through one

    @property
    def projection(self) -> tuple[float, float]:
        """Unity's projection entries (m00, m11) of this frame's camera."""
        if self.intrinsics is None:
            return projection_from_fov(self.vertical_fov_deg, self.width, self.height)
        m00, m11, _, _ = projection_from_intrinsics(self.intrinsics, self.width, self.height)
        return float(m00), float(m11)

    @property
    def camera(self) -> tuple:
        """What identifies this frame's camera: size and field of view or intrinsics."""
        return (self.width, self.height, self.vertical_fov_deg, self.intrinsics)

    def exact_camera(self) -> dict:
        """``{"cubepose_intrinsics": [fx, fy, cx, cy]}`` for a camera given in pixels (and ``cubepose_distortion``
        for a lens), else nothing (as before)."""
        exact = {} if self.intrinsics is None else {EXACT_INTRINSICS: [float(v) for v in self.intrinsics]}
        return exact if self.distortion is None else {**exact, DISTORTION: [float(v) for v in self.distortion]}


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


def stable_uuid(seed: int, salt: int) -> str:
    """A UUID fixed by (seed, salt), so the same options write the same folder names."""
    return str(uuid.UUID(bytes=np.random.default_rng([seed, salt]).bytes(16), version=4))


def _box_values(label: FrameLabel, camel_case: bool) -> list[dict]:
    """The 3D-box values of a frame: one per instance, numbered from 1 as Perception numbers instances."""
    keys = ("instanceId", "labelId", "labelName") if camel_case else ("instance_id", "label_id", "label_name")
    return [
        {
            **dict(zip(keys, (number, 1, LABEL_NAME), strict=True)),
            "translation": _rounded(translation),
            "size": [float(v) for v in label.size],
            "rotation": _rounded(quaternion),
            "velocity": [0.0, 0.0, 0.0],
            "acceleration": [0.0, 0.0, 0.0],
        }
        for number, (translation, quaternion) in enumerate(
            zip(label.translations, label.quaternions, strict=True), start=1
        )
    ]


class Layout:
    """What every layout answers: built for an output folder from ``cubepose generate``'s options."""

    def __init__(self, out: Path, seed: int) -> None:
        self.out = out

    @classmethod
    def for_options(cls, out: Path, options) -> Layout:
        """The layout writing ``options`` (a GenerationOptions) into ``out``."""
        return cls(out, options.seed)


class LegacyLayout(Layout):
    """Dataset<uuid>/captures_NNN.json + annotation_definitions.json, images in RGB<uuid>/rgb_N.png."""

    def __init__(self, out: Path, seed: int) -> None:
        super().__init__(out, seed)
        self.dataset_dir = out / f"Dataset{stable_uuid(seed, 1)}"
        self.rgb_dir = out / f"RGB{stable_uuid(seed, 2)}"
        self.definition_id = stable_uuid(seed, 3)
        self.sensor_id = stable_uuid(seed, 4)

    def prepare(self) -> None:
        self.rgb_dir.mkdir(parents=True, exist_ok=True)
        self.dataset_dir.mkdir(parents=True, exist_ok=True)

    def image_path(self, index: int) -> Path:
        return self.rgb_dir / f"rgb_{index + 2}.png"

    def label_path(self, index: int) -> Path | None:
        return None  # all labels go into captures_NNN.json at the end

    def write_label(self, label: FrameLabel) -> None:
        pass

    def finish(self, labels: list[FrameLabel]) -> None:
        if len({label.camera for label in labels}) > 1:
            raise ValueError("the legacy layout cannot record a camera per image; use --format solo")
        captures = [self._capture(label) for label in labels]
        for number, start in enumerate(range(0, len(captures), CAPTURES_PER_FILE)):
            chunk = {"version": "0.0.1", "captures": captures[start : start + CAPTURES_PER_FILE]}
            atomic_write_text(self.dataset_dir / f"captures_{number:03d}.json", json.dumps(chunk, indent=1))
        definition = {
            "id": self.definition_id,
            "name": BOX3D_DEFINITION_NAME,
            "description": "Bounding boxe for each labeled object visible to the sensor",
            "format": "JSON",
            "spec": [{"label_id": 1, "label_name": LABEL_NAME}],
        }
        definitions = {"version": "0.0.1", "annotation_definitions": [definition]}
        atomic_write_text(self.dataset_dir / "annotation_definitions.json", json.dumps(definitions, indent=1))

    def _capture(self, label: FrameLabel) -> dict:
        m00, m11 = label.projection
        return {
            "id": str(uuid.UUID(int=label.index + 1)),
            "sequence_id": str(uuid.UUID(int=label.index + 1)),
            "step": 0,
            "timestamp": 0.0,
            "sensor": {
                "sensor_id": self.sensor_id,
                "ego_id": self.sensor_id,
                "modality": "camera",
                "translation": [0.0, 0.0, 0.0],
                "rotation": [0.0, 0.0, 0.0, 1.0],
                "camera_intrinsic": [[m00, 0.0, 0.0], [0.0, m11, 0.0], [0.0, 0.0, FAR_CLIP_M22]],
            },
            "ego": {"ego_id": self.sensor_id, "translation": [0.0, 0.0, 0.0], "rotation": [0.0, 0.0, 0.0, 1.0]},
            **label.exact_camera(),
            "filename": self.image_path(label.index).relative_to(self.out).as_posix(),
            "format": "PNG",
            "annotations": [
                {
                    "id": str(uuid.UUID(int=10**9 + label.index)),
                    "annotation_definition": self.definition_id,
                    "values": _box_values(label, camel_case=False),
                }
            ],
        }


class SoloLayout(Layout):
    """metadata.json, annotation_definitions.json and sequence.N/step0.{camera.png,frame_data.json}."""

    def prepare(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)

    def image_path(self, index: int) -> Path:
        return self.out / f"sequence.{index}" / "step0.camera.png"

    def label_path(self, index: int) -> Path:
        return self.out / f"sequence.{index}" / "step0.frame_data.json"

    def write_label(self, label: FrameLabel) -> None:
        frame = {"frame": label.index, "sequence": label.index, "step": 0, "timestamp": 0.0, "metrics": []}
        frame["captures"] = [self._capture(label)]
        atomic_write_text(self.label_path(label.index), json.dumps(frame, indent=1), durable=False)

    def finish(self, labels: list[FrameLabel]) -> None:
        metadata = {
            "unityVersion": "none (cubepose generate)",
            "perceptionVersion": "SOLO layout written by cubepose",
            "totalFrames": len(labels),
            "totalSequences": len(labels),
            "sensors": ["camera"],
        }
        definition = {
            "@type": SOLO_BOX3D_TYPE,
            "id": "bounding box 3D",
            "description": "Produces 3D bounding box ground truth data for all visible objects that bear a label",
            "spec": [{"label_id": 1, "label_name": LABEL_NAME}],
        }
        atomic_write_text(self.out / "metadata.json", json.dumps(metadata, indent=1))
        definitions = json.dumps({"annotationDefinitions": [definition]}, indent=1)
        atomic_write_text(self.out / "annotation_definitions.json", definitions)

    def _capture(self, label: FrameLabel) -> dict:
        m00, m11 = label.projection
        return {
            "@type": SOLO_RGB_TYPE,
            "id": "camera",
            "description": "",
            "position": [0.0, 0.0, 0.0],
            "rotation": [0.0, 0.0, 0.0, 1.0],
            "velocity": [0.0, 0.0, 0.0],
            "acceleration": [0.0, 0.0, 0.0],
            "filename": self.image_path(label.index).name,
            "imageFormat": "Png",
            "dimension": [float(label.width), float(label.height)],
            "projection": "Perspective",
            "matrix": [m00, 0.0, 0.0, 0.0, m11, 0.0, 0.0, 0.0, FAR_CLIP_M22],
            **label.exact_camera(),
            "annotations": [
                {
                    "@type": SOLO_BOX3D_TYPE,
                    "id": "bounding box 3D",
                    "sensorId": "camera",
                    "values": _box_values(label, camel_case=True),
                }
            ],
        }


class BopLayout(Layout):
    """A BOP dataset: ``models/`` (and ``models_eval/``: models_info.json and the box as obj_000001.ply, mm),
    ``test_targets_bop19.json`` and ``<split>/<scene>/{rgb/<image>.png, scene_gt.json, scene_camera.json}``,
    1000 images per scene as BOP's PBR data. Poses and cameras are converted by ``cubepose.data.bop``."""

    def __init__(self, out: Path, seed: int, split: str = BOP_SPLIT, symmetries: np.ndarray | None = None) -> None:
        self.out, self.split = out, split
        self.symmetries = np.array([[0.0, 0.0, 0.0, 1.0]]) if symmetries is None else np.asarray(symmetries)

    @classmethod
    def for_options(cls, out: Path, options) -> BopLayout:
        """models_info.json declares the box's shape symmetries for plain faces (it then looks the same turned
        onto itself), none for dice and photos."""
        plain = options.scene.faces == "plain"
        return cls(out, options.seed, options.bop_split, box_rotations(options.scene.dimensions) if plain else None)

    def prepare(self) -> None:
        (self.out / self.split).mkdir(parents=True, exist_ok=True)

    def image_path(self, index: int) -> Path:
        scene, image = divmod(index, BOP_IMAGES_PER_SCENE)
        return self.out / self.split / f"{scene:06d}" / "rgb" / f"{image:06d}.png"

    def label_path(self, index: int) -> Path | None:
        return None  # each scene's labels go into its scene_gt.json at the end

    def write_label(self, label: FrameLabel) -> None:
        pass

    def finish(self, labels: list[FrameLabel]) -> None:
        scenes: dict[int, list[FrameLabel]] = {}
        for label in labels:
            scenes.setdefault(label.index // BOP_IMAGES_PER_SCENE, []).append(label)
        for scene, members in scenes.items():
            folder = self.out / self.split / f"{scene:06d}"
            ground_truth, cameras = {}, {}
            for label in members:
                key = str(label.index % BOP_IMAGES_PER_SCENE)
                rotations, millimetres = bop_poses(label.translations, label.quaternions)
                ground_truth[key] = [
                    {"cam_R_m2c": _rounded(r.reshape(-1)), "cam_t_m2c": _rounded(t), "obj_id": BOP_OBJ_ID}
                    for r, t in zip(rotations, millimetres, strict=True)
                ]
                cameras[key] = {"cam_K": bop_intrinsics(*self._intrinsics(label)), "depth_scale": 1.0}
            atomic_write_text(folder / "scene_gt.json", json.dumps(ground_truth, indent=1))
            atomic_write_text(folder / "scene_camera.json", json.dumps(cameras, indent=1))
        targets = [
            {
                "im_id": label.index % BOP_IMAGES_PER_SCENE,
                "inst_count": len(label.translations),
                "obj_id": BOP_OBJ_ID,
                "scene_id": label.index // BOP_IMAGES_PER_SCENE,
            }
            for label in labels
            if len(label.translations)
        ]
        atomic_write_text(self.out / "test_targets_bop19.json", json.dumps(targets, indent=1))
        if labels:
            self._write_model(labels[0].size)

    @staticmethod
    def _intrinsics(label: FrameLabel) -> list[float]:
        if label.intrinsics is not None:
            return [float(v) for v in label.intrinsics]
        return [float(v) for v in intrinsics_from_fov(label.vertical_fov_deg, label.width, label.height)]

    def _write_model(self, size: tuple[float, float, float]) -> None:
        """models_info.json (size, diameter, symmetries) and the box's PLY, in models/ and models_eval/."""
        millimetres = np.asarray(size, np.float64) * 1000
        rotations, _ = bop_poses(np.zeros((len(self.symmetries), 3)), self.symmetries)
        symmetries = [np.block([[r, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]) for r in rotations[1:]]
        info = {
            str(BOP_OBJ_ID): {
                "diameter": round(float(np.linalg.norm(millimetres)), 6),
                **{f"min_{axis}": round(float(-v / 2), 6) for axis, v in zip("xyz", millimetres, strict=True)},
                **{f"size_{axis}": round(float(v), 6) for axis, v in zip("xyz", millimetres, strict=True)},
                **({"symmetries_discrete": [_rounded(m.reshape(-1)) for m in symmetries]} if symmetries else {}),
            }
        }
        for folder in ("models", "models_eval"):
            atomic_write_text(self.out / folder / "models_info.json", json.dumps(info, indent=1))
            atomic_write_text(self.out / folder / f"obj_{BOP_OBJ_ID:06d}.ply", box_ply(millimetres))


def box_ply(dimensions: np.ndarray) -> str:
    """An ASCII PLY of a box centred at the origin: 8 vertices and 12 outward-facing triangles."""
    corners = box_corners(dimensions)
    triangles = []
    for axis in range(3):
        for sign in (-1, 1):
            face = np.flatnonzero(np.sign(corners[:, axis]) == sign)
            centre = corners[face].mean(axis=0)
            u, v = np.eye(3)[(axis + 1) % 3], np.eye(3)[(axis + 2) % 3]
            angles = np.arctan2((corners[face] - centre) @ v, (corners[face] - centre) @ u)
            ring = face[np.argsort(angles * sign)]  # counter-clockwise seen from outside
            triangles += [(ring[0], ring[1], ring[2]), (ring[0], ring[2], ring[3])]
    header = [
        "ply",
        "format ascii 1.0",
        "element vertex 8",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(triangles)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    vertices = [" ".join(f"{v:g}" for v in corner) for corner in corners]
    faces = [f"3 {a} {b} {c}" for a, b, c in triangles]
    return "\n".join(header + vertices + faces) + "\n"


LAYOUTS = {"legacy": LegacyLayout, "solo": SoloLayout, "bop": BopLayout}
