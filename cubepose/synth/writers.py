"""The two Unity Perception layouts (legacy 0.x and SOLO) as written by ``cubepose generate``.

A layout names each frame's files, writes the per-frame labels (SOLO: one JSON per frame,
written by the worker that rendered it) and, at the end, the dataset-wide files (legacy:
captures_NNN.json from all labels). Both record the cube's 3D box (pose and edge lengths) in the
camera frame and the camera as Unity writes it (legacy: ``camera_intrinsic``; SOLO: ``matrix`` and
``dimension``). A camera given in pixels (``--camera``) is also recorded exactly, as
``cubepose_intrinsics: [fx, fy, cx, cy]`` on the capture, which cubepose's readers prefer: Unity's
matrix has no principal point, and legacy ``camera_intrinsic`` is not trusted.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cubepose.geometry import projection_from_fov, projection_from_intrinsics
from cubepose.io_utils import atomic_write_text

CAPTURES_PER_FILE = 150  # as Perception 0.x writes them
BOX3D_DEFINITION_NAME = "bounding box 3D"
LABEL_NAME = "cube_position"
SOLO_RGB_TYPE = "type.unity.com/unity.solo.RGBCamera"
SOLO_BOX3D_TYPE = "type.unity.com/unity.solo.BoundingBox3DAnnotation"
FAR_CLIP_M22 = -1.0006  # Unity's m22 for near 0.3 m / far 1000 m; unused by the reader
EXACT_INTRINSICS = "cubepose_intrinsics"  # capture key: [fx, fy, cx, cy] in pixels, read before Unity's camera fields


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
        """``{"cubepose_intrinsics": [fx, fy, cx, cy]}`` for a camera given in pixels, else nothing (as before)."""
        return {} if self.intrinsics is None else {EXACT_INTRINSICS: [float(v) for v in self.intrinsics]}


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


class LegacyLayout:
    """Dataset<uuid>/captures_NNN.json + annotation_definitions.json, images in RGB<uuid>/rgb_N.png."""

    def __init__(self, out: Path, seed: int) -> None:
        self.out = out
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


class SoloLayout:
    """metadata.json, annotation_definitions.json and sequence.N/step0.{camera.png,frame_data.json}."""

    def __init__(self, out: Path, seed: int) -> None:
        self.out = out

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


LAYOUTS = {"legacy": LegacyLayout, "solo": SoloLayout}
