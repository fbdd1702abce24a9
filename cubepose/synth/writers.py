"""Writers of Unity Perception's two layouts (legacy 0.x and SOLO) for generated frames.

Both record the cube's 3D bounding box in the camera frame; SOLO also records the
camera's projection matrix and image size, which the reader turns into intrinsics.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from cubepose.geometry import CUBE_SIZE
from cubepose.io_utils import atomic_write_text
from cubepose.synth.render import Camera

CAPTURES_PER_FILE = 150  # as Perception 0.x writes them
BOX3D_DEFINITION_NAME = "bounding box 3D"
LABEL_NAME = "cube_position"
SOLO_RGB_TYPE = "type.unity.com/unity.solo.RGBCamera"
SOLO_BOX3D_TYPE = "type.unity.com/unity.solo.BoundingBox3DAnnotation"
FAR_CLIP_M22 = -1.0006  # Unity's m22 for near 0.3 m / far 1000 m; unused by the reader
FORMATS = ("legacy", "solo")


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


def stable_uuid(seed: int, salt: int) -> str:
    """A UUID fixed by (seed, salt), so the same options write the same folder names."""
    return str(uuid.UUID(bytes=np.random.default_rng([seed, salt]).bytes(16), version=4))


class LegacyWriter:
    """Dataset<uuid>/captures_NNN.json + annotation_definitions.json, images in RGB<uuid>/."""

    def __init__(self, out: Path, seed: int, camera: Camera) -> None:
        self.out = out
        self.camera = camera
        self.dataset_dir = out / f"Dataset{stable_uuid(seed, 1)}"
        self.rgb_name = f"RGB{stable_uuid(seed, 2)}"
        self.definition_id = stable_uuid(seed, 3)
        self.sensor_id = stable_uuid(seed, 4)
        (out / self.rgb_name).mkdir(parents=True, exist_ok=True)
        self.dataset_dir.mkdir(parents=True, exist_ok=True)
        self.captures: list[dict] = []

    def add(self, index: int, image: np.ndarray, translation: np.ndarray, quaternion: np.ndarray) -> None:
        filename = f"{self.rgb_name}/rgb_{index + 2}.png"
        Image.fromarray(image).save(self.out / filename)
        self.captures.append(self._capture(index, filename, translation, quaternion))

    def close(self) -> None:
        for number, start in enumerate(range(0, len(self.captures), CAPTURES_PER_FILE)):
            chunk = {"version": "0.0.1", "captures": self.captures[start : start + CAPTURES_PER_FILE]}
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

    def _capture(self, index: int, filename: str, translation: np.ndarray, quaternion: np.ndarray) -> dict:
        camera = self.camera
        return {
            "id": str(uuid.UUID(int=index + 1)),
            "sequence_id": str(uuid.UUID(int=index + 1)),
            "step": 0,
            "timestamp": 0.0,
            "sensor": {
                "sensor_id": self.sensor_id,
                "ego_id": self.sensor_id,
                "modality": "camera",
                "translation": [0.0, 0.0, 0.0],
                "rotation": [0.0, 0.0, 0.0, 1.0],
                "camera_intrinsic": [[camera.m00, 0.0, 0.0], [0.0, camera.m11, 0.0], [0.0, 0.0, FAR_CLIP_M22]],
            },
            "ego": {"ego_id": self.sensor_id, "translation": [0.0, 0.0, 0.0], "rotation": [0.0, 0.0, 0.0, 1.0]},
            "filename": filename,
            "format": "PNG",
            "annotations": [
                {
                    "id": str(uuid.UUID(int=10**9 + index)),
                    "annotation_definition": self.definition_id,
                    "values": [
                        {
                            "label_id": 1,
                            "label_name": LABEL_NAME,
                            "instance_id": 1,
                            "translation": _rounded(translation),
                            "size": [CUBE_SIZE] * 3,
                            "rotation": _rounded(quaternion),
                            "velocity": [0.0, 0.0, 0.0],
                            "acceleration": [0.0, 0.0, 0.0],
                        }
                    ],
                }
            ],
        }


class SoloWriter:
    """metadata.json, annotation_definitions.json and sequence.N/step0.{camera.png,frame_data.json}."""

    def __init__(self, out: Path, seed: int, camera: Camera) -> None:
        self.out = out
        self.camera = camera
        self.count = 0
        out.mkdir(parents=True, exist_ok=True)

    def add(self, index: int, image: np.ndarray, translation: np.ndarray, quaternion: np.ndarray) -> None:
        sequence = self.out / f"sequence.{index}"
        sequence.mkdir(exist_ok=True)
        Image.fromarray(image).save(sequence / "step0.camera.png")
        frame = {"frame": index, "sequence": index, "step": 0, "timestamp": 0.0, "metrics": []}
        frame["captures"] = [self._capture(translation, quaternion)]
        atomic_write_text(sequence / "step0.frame_data.json", json.dumps(frame, indent=1))
        self.count += 1

    def close(self) -> None:
        metadata = {
            "unityVersion": "none (cubepose generate)",
            "perceptionVersion": "SOLO layout written by cubepose",
            "totalFrames": self.count,
            "totalSequences": self.count,
            "sensors": ["camera"],
        }
        definition = {
            "@type": SOLO_BOX3D_TYPE,
            "id": "bounding box 3D",
            "description": "Produces 3D bounding box ground truth data for all visible objects that bear a label",
            "spec": [{"label_id": 1, "label_name": LABEL_NAME}],
        }
        atomic_write_text(self.out / "metadata.json", json.dumps(metadata, indent=1))
        atomic_write_text(
            self.out / "annotation_definitions.json", json.dumps({"annotationDefinitions": [definition]}, indent=1)
        )

    def _capture(self, translation: np.ndarray, quaternion: np.ndarray) -> dict:
        camera = self.camera
        box = {
            "instanceId": 1,
            "labelId": 1,
            "labelName": LABEL_NAME,
            "translation": _rounded(translation),
            "size": [CUBE_SIZE] * 3,
            "rotation": _rounded(quaternion),
            "velocity": [0.0, 0.0, 0.0],
            "acceleration": [0.0, 0.0, 0.0],
        }
        return {
            "@type": SOLO_RGB_TYPE,
            "id": "camera",
            "description": "",
            "position": [0.0, 0.0, 0.0],
            "rotation": [0.0, 0.0, 0.0, 1.0],
            "velocity": [0.0, 0.0, 0.0],
            "acceleration": [0.0, 0.0, 0.0],
            "filename": "step0.camera.png",
            "imageFormat": "Png",
            "dimension": [float(camera.width), float(camera.height)],
            "projection": "Perspective",
            "matrix": [camera.m00, 0.0, 0.0, 0.0, camera.m11, 0.0, 0.0, 0.0, FAR_CLIP_M22],
            "annotations": [{"@type": SOLO_BOX3D_TYPE, "id": "bounding box 3D", "sensorId": "camera", "values": [box]}],
        }


WRITERS = {"legacy": LegacyWriter, "solo": SoloWriter}
