"""Drawing poses on images: the object's wireframe (a Box) projected with each example's camera.

One vectorised rasteriser serves the report's galleries and the TensorBoard images of
``log_op``: edges are clipped to the image, sampled densely and scattered into the batch.
"""

from __future__ import annotations

import numpy as np

from cubepose.geometry.object import Box
from cubepose.geometry.projection import project_with_intrinsics, transform_points

# Box.corners orders corners by (x, y, z) sign bits; edges join corners differing in one bit
CUBE_EDGES = np.array([(i, j) for i in range(8) for j in range(i + 1, 8) if (i ^ j) in (1, 2, 4)])
TRUE_COLOUR = (40, 220, 60)
PREDICTED_COLOUR = (235, 40, 40)
NEAR = 1e-3  # corners closer to the camera plane than this (metres) are not drawn


def _clip_segments(start: np.ndarray, end: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Liang-Barsky: segments (..., 2) cut to the box [0, width] x [0, height]; empty ones have t0 > t1."""
    delta = end - start
    p = np.stack([-delta[..., 0], delta[..., 0], -delta[..., 1], delta[..., 1]], axis=-1)
    q = np.stack([start[..., 0], width - start[..., 0], start[..., 1], height - start[..., 1]], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = q / p
    t0 = np.max(np.where(p < 0, ratio, 0.0), axis=-1)
    t1 = np.min(np.where(p > 0, ratio, 1.0), axis=-1)
    outside = np.any((p == 0) & (q < 0), axis=-1)
    t1 = np.where(outside, -1.0, t1)
    return start + t0[..., None] * delta, np.where((t0 <= t1)[..., None], start + t1[..., None] * delta, np.nan)


def draw_cubes(
    images: np.ndarray,
    intrinsics: np.ndarray,
    translation: np.ndarray,
    quaternion: np.ndarray,
    colour: tuple[int, int, int],
    line_width: int = 1,
    box: Box | None = None,
) -> np.ndarray:
    """Draw the 12 edges of ``box`` (default ``Box()``) at each pose into uint8 ``images`` (B, H, W, 3), in
    place; returned.

    ``intrinsics`` (B, 4) are in pixels of these images. Poses with a corner behind the camera
    are skipped: their projection is meaningless.
    """
    batch, height, width = images.shape[:3]
    corners = (box or Box()).corners()
    corners = transform_points(corners, np.asarray(translation), np.asarray(quaternion))  # (B, 8, 3)
    pixels = project_with_intrinsics(corners, intrinsics)  # (B, 8, 2)
    in_front = np.all(corners[..., 2] > NEAR, axis=-1)
    start, end = _clip_segments(pixels[:, CUBE_EDGES[:, 0]], pixels[:, CUBE_EDGES[:, 1]], width, height)
    steps = 2 * int(np.ceil(np.hypot(width, height))) + 1  # at most half a pixel apart on a clipped edge
    t = np.linspace(0.0, 1.0, steps)[:, None]
    points = start[..., None, :] + t * (end - start)[..., None, :]  # (B, 12, steps, 2)
    offsets = np.arange(line_width) - (line_width - 1) // 2
    u = np.floor(points[..., 0])[..., None, None] + offsets[:, None]  # thicken in x and y
    v = np.floor(points[..., 1])[..., None, None] + offsets[None, :]
    u, v = np.broadcast_arrays(u, v)
    b = np.broadcast_to(np.arange(batch)[:, None, None, None, None], u.shape)
    keep = np.isfinite(u) & (u >= 0) & (u < width) & (v >= 0) & (v < height) & in_front[b]
    images[b[keep], v[keep].astype(np.intp), u[keep].astype(np.intp)] = colour
    return images


def only_shown(translations: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """Translations (B, M, 3) with the slots not ``shown`` (B, M) put behind the camera, where no drawing shows
    them (empty instance slots, predictions not found)."""
    return np.where(np.asarray(shown, bool)[..., None], np.asarray(translations, np.float64), [0.0, 0.0, -1.0])


def pose_overlays(
    images: np.ndarray,
    intrinsics: np.ndarray,
    true: tuple[np.ndarray, np.ndarray],
    predicted: tuple[np.ndarray, np.ndarray],
    scale: int = 1,
    box: Box | None = None,
) -> np.ndarray:
    """uint8 images (B, H, W, 3) enlarged ``scale`` times with the true (green) and predicted (red) ``box``.

    Poses are (B, 3) and (B, 4), or (B, M, 3) and (B, M, 4) for several instances per image (a slot to leave
    out: a translation behind the camera).
    """
    canvas = np.repeat(np.repeat(np.asarray(images, np.uint8), scale, axis=1), scale, axis=2)
    scaled = np.asarray(intrinsics, np.float64) * scale  # pixel edges stay pixel edges under repetition
    line_width = max(1, canvas.shape[2] // 128)
    for (translation, quaternion), colour in ((true, TRUE_COLOUR), (predicted, PREDICTED_COLOUR)):
        translation, quaternion = np.asarray(translation), np.asarray(quaternion)
        if translation.ndim == 2:
            translation, quaternion = translation[:, None], quaternion[:, None]
        for slot in range(translation.shape[1]):  # a few instance slots, each drawn in every image at once
            draw_cubes(canvas, scaled, translation[:, slot], quaternion[:, slot], colour, line_width, box)
    return canvas
