"""Quaternions (x, y, z, w), rotations and pinhole projection in Unity's camera frame.

Unity's camera frame: x right, y up, z forward; image v grows downward. All functions
are batched over leading axes and do no I/O.
"""

from __future__ import annotations

import numpy as np

CUBE_SIZE = 0.1  # metres, the cube of Unity's UR3 demo


def canonicalize_quaternions(q: np.ndarray) -> np.ndarray:
    """Unit quaternions with the sign chosen so that w >= 0 (q and -q are one rotation)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., 3:4] < 0, -q, q)


def random_quaternions(rng: np.random.Generator, count: int) -> np.ndarray:
    """Rotations drawn uniformly from SO(3) (normalised 4-D Gaussians), canonical sign."""
    return canonicalize_quaternions(rng.normal(size=(count, 4)))


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4) in (x, y, z, w) order."""
    q = np.asarray(q, dtype=np.float64)
    x, y, z, w = np.moveaxis(q, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def cube_corners(size: float = CUBE_SIZE) -> np.ndarray:
    """The 8 corners (8, 3) of an axis-aligned cube of edge ``size`` centred at the origin."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    return signs * (size / 2)


def transform_points(points: np.ndarray, translation: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    """Object points (P, 3) under poses (..., 3)/(..., 4) -> camera-frame points (..., P, 3)."""
    rotation = quaternion_to_matrix(quaternion)
    return np.einsum("...ij,pj->...pi", rotation, points) + np.asarray(translation)[..., None, :]


def projection_from_fov(vertical_fov_deg: float, width: int, height: int) -> tuple[float, float]:
    """Unity's projection-matrix entries (m00, m11) for a vertical field of view and aspect."""
    m11 = 1.0 / np.tan(np.radians(vertical_fov_deg) / 2)
    return m11 * height / width, m11


def project_points(points: np.ndarray, m00: float, m11: float, width: int, height: int) -> np.ndarray:
    """Camera-frame points (..., 3) -> pixel coordinates (..., 2): u = W/2 (1 + m00 x/z), v = H/2 (1 - m11 y/z)."""
    points = np.asarray(points, dtype=np.float64)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    u = width / 2 * (1 + m00 * x / z)
    v = height / 2 * (1 - m11 * y / z)
    return np.stack([u, v], axis=-1)
