"""Flat-shaded rendering of a cube with distinctly coloured faces over a random background.

A convex cube needs no depth buffer: the faces turned towards the camera never overlap,
so each is filled as one polygon. Rendering is supersampled and box-filtered down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from cubepose.geometry import CUBE_SIZE, project_points, quaternion_to_matrix

# One colour per face (+x, -x, +y, -y, +z, -z): distinct in hue so orientation is unambiguous.
FACE_COLOURS = np.array(
    [[220, 40, 40], [40, 180, 60], [50, 80, 230], [240, 210, 40], [200, 60, 200], [40, 200, 210]],
    dtype=np.float64,
)
SYMMETRIC_COLOUR = np.array([200, 200, 200], dtype=np.float64)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera in Unity's convention, given by image size and vertical field of view."""

    width: int
    height: int
    vertical_fov_deg: float

    @property
    def m11(self) -> float:
        return float(1.0 / np.tan(np.radians(self.vertical_fov_deg) / 2))

    @property
    def m00(self) -> float:
        return self.m11 * self.height / self.width


def _faces(size: float) -> tuple[np.ndarray, np.ndarray]:
    """Face normals (6, 3) and the 4 corners of each face in cycle order (6, 4, 3)."""
    normals, corners = [], []
    cycle = [(-1, -1), (-1, 1), (1, 1), (1, -1)]
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        for sign in (1, -1):
            normal = np.zeros(3)
            normal[axis] = sign
            quad = np.zeros((4, 3))
            quad[:, axis] = sign
            quad[:, others] = np.array(cycle, dtype=np.float64)
            normals.append(normal)
            corners.append(quad * size / 2)
    return np.array(normals), np.array(corners)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random two-colour linear gradient with pixel noise, float RGB (H, W, 3)."""
    start, end = rng.uniform(0, 255, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width] / max(width, height)
    ramp = np.cos(angle) * xs + np.sin(angle) * ys
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-9)
    image = start + ramp[..., None] * (end - start)
    return image + rng.normal(0, rng.uniform(0, 12), size=image.shape)


def render_cube(
    translation: np.ndarray,
    quaternion: np.ndarray,
    camera: Camera,
    rng: np.random.Generator,
    symmetric: bool = False,
    supersample: int = 2,
) -> np.ndarray:
    """Render one RGB uint8 image (H, W, 3) of the cube at the given camera-frame pose."""
    width, height = camera.width * supersample, camera.height * supersample
    canvas = Image.fromarray(np.clip(_background(rng, width, height), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)

    rotation = quaternion_to_matrix(quaternion)
    normals, quads = _faces(CUBE_SIZE)
    normals_cam = normals @ rotation.T
    quads_cam = quads @ rotation.T + translation
    centres_cam = quads_cam.mean(axis=1)
    visible = np.einsum("fi,fi->f", normals_cam, centres_cam) < 0

    light = rng.normal(size=3) + np.array([0.0, -1.0, 1.5])  # mostly from above, behind the camera
    light /= np.linalg.norm(light)
    ambient = rng.uniform(0.35, 0.6)
    shade = ambient + (1 - ambient) * np.clip(-normals_cam @ light, 0, 1)
    colours = np.repeat(SYMMETRIC_COLOUR[None], 6, axis=0) if symmetric else FACE_COLOURS
    colours = np.clip(colours * shade[:, None] * rng.uniform(0.8, 1.2), 0, 255)

    pixels = project_points(quads_cam, camera.m00, camera.m11, width, height)
    for face in np.flatnonzero(visible):
        draw.polygon([tuple(p) for p in pixels[face]], fill=tuple(int(c) for c in colours[face]))

    return np.asarray(canvas.resize((camera.width, camera.height), Image.BOX))
