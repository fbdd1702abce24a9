"""`cubepose generate`: a synthetic dataset in one of Unity Perception's layouts.

Each image gets its own random generator seeded by (seed, index), so the same seed and
options give the same dataset whatever the order of work.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cubepose.geometry import canonicalize_quaternions, random_quaternions
from cubepose.synth.render import Camera, render_cube
from cubepose.synth.writers import WRITERS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationOptions:
    """What the generator randomises and within which ranges."""

    count: int
    seed: int = 0
    image_size: int = 128
    vertical_fov_deg: float = 60.0  # Unity's default camera
    distance: tuple[float, float] = (0.28, 0.57)  # metres along the optical axis
    margin: float = 0.6  # share of the half-image the cube centre may reach
    symmetric: bool = False
    rotation: str = "yaw"  # "yaw": about the camera's vertical axis, as Unity's UR3 demo; "full": any
    format: str = "legacy"  # Perception layout written: "legacy" (0.x) or "solo" (1.0+)


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


def generate_dataset(out: str | os.PathLike, options: GenerationOptions) -> Path:
    """Render ``options.count`` images and write them in ``options.format``'s Perception layout under ``out``."""
    if options.count < 1:
        raise ValueError(f"--count must be at least 1, got {options.count}")
    if options.format not in WRITERS:
        raise ValueError(f"--format must be one of {', '.join(WRITERS)}, got {options.format!r}")
    out = Path(out)
    camera = Camera(options.image_size, options.image_size, options.vertical_fov_deg)
    writer = WRITERS[options.format](out, options.seed, camera)
    for index in tqdm(range(options.count), desc=f"rendering {out}", unit="img"):
        rng = np.random.default_rng([options.seed, index, 0])
        translation, quaternion = sample_pose(rng, options)
        image = render_cube(translation, quaternion, camera, rng, symmetric=options.symmetric)
        writer.add(index, image, translation, quaternion)
    writer.close()
    logger.info("wrote %d captures (%s layout) to %s", options.count, options.format, out)
    return out
