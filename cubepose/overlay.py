"""Drawing poses on images: the cube's wireframe projected with an example's camera."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from cubepose.geometry import cube_corners, project_with_intrinsics, transform_points

# cube_corners orders corners by (x, y, z) sign bits; edges join corners differing in one bit
CUBE_EDGES = [(i, j) for i in range(8) for j in range(i + 1, 8) if (i ^ j) in (1, 2, 4)]
TRUE_COLOUR = (40, 220, 60)
PREDICTED_COLOUR = (235, 40, 40)


def draw_cube(
    image: Image.Image, intrinsics: np.ndarray, translation: np.ndarray, quaternion: np.ndarray, colour: tuple
) -> Image.Image:
    """``image`` with the 12 edges of the cube at this pose drawn in ``colour`` (in place; returned)."""
    corners = transform_points(cube_corners(), np.asarray(translation), np.asarray(quaternion))
    if np.any(corners[:, 2] <= 1e-6):
        return image  # behind the camera: nothing sensible to draw
    pixels = project_with_intrinsics(corners, intrinsics)
    draw = ImageDraw.Draw(image)
    width = max(1, image.width // 128)
    for i, j in CUBE_EDGES:
        draw.line([tuple(pixels[i]), tuple(pixels[j])], fill=colour, width=width)
    return image


def pose_overlay(
    image_path: str,
    intrinsics: np.ndarray,
    intrinsics_size: int,
    true: tuple[np.ndarray, np.ndarray],
    predicted: tuple[np.ndarray, np.ndarray],
    size: int = 256,
) -> Image.Image:
    """The image resized to ``size`` with the true (green) and predicted (red) cubes.

    ``intrinsics`` are in pixels of a square image of ``intrinsics_size`` (the network input).
    """
    with Image.open(image_path) as source:
        image = source.convert("RGB").resize((size, size), Image.BILINEAR)
    scaled = np.asarray(intrinsics, np.float64) * (size / intrinsics_size)
    draw_cube(image, scaled, *true, TRUE_COLOUR)
    draw_cube(image, scaled, *predicted, PREDICTED_COLOUR)
    return image
