"""`cubepose generate`: a synthetic dataset in Unity Perception's legacy layout.

Each image gets its own random generator seeded by (seed, index), so the same seed and
options give the same dataset whatever the order of work.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cubepose.geometry import CUBE_SIZE, canonicalize_quaternions, random_quaternions
from cubepose.io_utils import atomic_write_text
from cubepose.synth.render import Camera, render_cube

logger = logging.getLogger(__name__)

CAPTURES_PER_FILE = 150  # as Perception 0.x writes them
BOX3D_DEFINITION_NAME = "bounding box 3D"
LABEL_NAME = "cube_position"


@dataclass(frozen=True)
class GenerationOptions:
    """What the generator randomises and within which ranges."""

    count: int
    seed: int = 0
    image_size: int = 128
    vertical_fov_deg: float = 50.0
    distance: tuple[float, float] = (0.35, 0.7)  # metres along the optical axis
    margin: float = 0.6  # share of the half-image the cube centre may reach
    symmetric: bool = False
    rotation: str = "yaw"  # "yaw": about the camera's vertical axis, as Unity's UR3 demo; "full": any


ROTATION_MODES = ("yaw", "full")


def sample_rotation(rng: np.random.Generator, mode: str) -> np.ndarray:
    """A canonical unit quaternion: uniform yaw about the camera's y (up) axis, or uniform on SO(3)."""
    if mode == "full":
        return random_quaternions(rng, 1)[0]
    if mode != "yaw":
        raise ValueError(f"--rotation must be one of {', '.join(ROTATION_MODES)}, got {mode!r}")
    half_angle = rng.uniform(0, np.pi)
    return canonicalize_quaternions(np.array([0.0, np.sin(half_angle), 0.0, np.cos(half_angle)]))


def sample_pose(rng: np.random.Generator, options: GenerationOptions) -> tuple[np.ndarray, np.ndarray]:
    """A camera-frame translation inside the view frustum and a uniform random rotation."""
    z = rng.uniform(*options.distance)
    half_height = z * np.tan(np.radians(options.vertical_fov_deg) / 2)
    x, y = rng.uniform(-1, 1, size=2) * half_height * options.margin
    return np.array([x, y, z]), sample_rotation(rng, options.rotation)


def _stable_uuid(seed: int, salt: int) -> str:
    return str(uuid.UUID(bytes=np.random.default_rng([seed, salt]).bytes(16), version=4))


def generate_dataset(out: str | os.PathLike, options: GenerationOptions) -> Path:
    """Render ``options.count`` images and write the legacy Perception layout under ``out``."""
    if options.count < 1:
        raise ValueError(f"--count must be at least 1, got {options.count}")
    out = Path(out)
    dataset_dir = out / f"Dataset{_stable_uuid(options.seed, 1)}"
    rgb_name = f"RGB{_stable_uuid(options.seed, 2)}"
    definition_id = _stable_uuid(options.seed, 3)
    sensor_id = _stable_uuid(options.seed, 4)
    (out / rgb_name).mkdir(parents=True, exist_ok=True)
    dataset_dir.mkdir(parents=True, exist_ok=True)

    size = options.image_size
    camera = Camera(size, size, options.vertical_fov_deg)
    captures = []
    for index in tqdm(range(options.count), desc=f"rendering {out}", unit="img"):
        rng = np.random.default_rng([options.seed, index, 0])
        translation, quaternion = sample_pose(rng, options)
        image = render_cube(translation, quaternion, camera, rng, symmetric=options.symmetric)
        filename = f"{rgb_name}/rgb_{index + 2}.png"
        Image.fromarray(image).save(out / filename)
        captures.append(_capture(index, filename, translation, quaternion, camera, definition_id, sensor_id))

    for number, start in enumerate(range(0, len(captures), CAPTURES_PER_FILE)):
        chunk = {"version": "0.0.1", "captures": captures[start : start + CAPTURES_PER_FILE]}
        atomic_write_text(dataset_dir / f"captures_{number:03d}.json", json.dumps(chunk, indent=1))
    definitions = {
        "version": "0.0.1",
        "annotation_definitions": [
            {
                "id": definition_id,
                "name": BOX3D_DEFINITION_NAME,
                "description": "Bounding boxe for each labeled object visible to the sensor",
                "format": "JSON",
                "spec": [{"label_id": 1, "label_name": LABEL_NAME}],
            }
        ],
    }
    atomic_write_text(dataset_dir / "annotation_definitions.json", json.dumps(definitions, indent=1))
    logger.info("wrote %d captures to %s", len(captures), out)
    return out


def _capture(
    index: int,
    filename: str,
    translation: np.ndarray,
    quaternion: np.ndarray,
    camera: Camera,
    definition_id: str,
    sensor_id: str,
) -> dict:
    """One legacy capture record with a single 3D bounding box value."""
    return {
        "id": str(uuid.UUID(int=index + 1)),
        "sequence_id": str(uuid.UUID(int=index + 1)),
        "step": 0,
        "timestamp": 0.0,
        "sensor": {
            "sensor_id": sensor_id,
            "ego_id": sensor_id,
            "modality": "camera",
            "translation": [0.0, 0.0, 0.0],
            "rotation": [0.0, 0.0, 0.0, 1.0],
            "camera_intrinsic": [[camera.m00, 0.0, 0.0], [0.0, camera.m11, 0.0], [0.0, 0.0, -1.0006]],
        },
        "ego": {"ego_id": sensor_id, "translation": [0.0, 0.0, 0.0], "rotation": [0.0, 0.0, 0.0, 1.0]},
        "filename": filename,
        "format": "PNG",
        "annotations": [
            {
                "id": str(uuid.UUID(int=10**9 + index)),
                "annotation_definition": definition_id,
                "values": [
                    {
                        "label_id": 1,
                        "label_name": LABEL_NAME,
                        "instance_id": 1,
                        "translation": [round(float(v), 6) for v in translation],
                        "size": [CUBE_SIZE] * 3,
                        "rotation": [round(float(v), 6) for v in quaternion],
                        "velocity": [0.0, 0.0, 0.0],
                        "acceleration": [0.0, 0.0, 0.0],
                    }
                ],
            }
        ],
    }
