"""Quaternions (x, y, z, w), rotations and pinhole projection in Unity's camera frame.

Unity's camera frame: x right, y up, z forward; image v grows downward. All functions
are batched over leading axes and do no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

Array = TypeVar("Array", np.ndarray, "torch.Tensor")  # pinhole_pixels takes either

# Unity's camera frame (y up) <-> OpenCV's (y down, as PnP solvers and BOP use it): negate y
OPENCV_AXES = np.array([1.0, -1.0, 1.0])

# Corner i of a box has sign bits (x, y, z) = (i >> 2, i >> 1, i) & 1: edges join corners one bit apart.
CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)


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


def box_corners(dimensions: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """The 8 corners (8, 3) of an axis-aligned box of edge lengths ``dimensions`` (x, y, z) centred at the origin."""
    return CORNER_SIGNS * (np.asarray(dimensions, dtype=np.float64) / 2)


def cube_corners(size: float | None = None) -> np.ndarray:
    """The 8 corners (8, 3) of a cube of edge ``size`` centred at the origin; None: the default object's."""
    if size is None:
        from cubepose.object_model import Box  # the default lives in the config schema

        return Box().corners()
    return box_corners((size, size, size))


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


# --- pinhole intrinsics ------------------------------------------------------------------
# A camera is (fx, fy, cx, cy) in pixels of one image size, in Unity's frame (y up):
#   u = cx + fx * x / z,   v = cy - fy * y / z.


def intrinsics_from_projection(m00: np.ndarray, m11: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """(..., 4) intrinsics of Unity's projection matrix entries at an image size (SOLO's ``matrix``)."""
    width, height = np.asarray(width, np.float64), np.asarray(height, np.float64)
    return np.stack(np.broadcast_arrays(width / 2 * m00, height / 2 * m11, width / 2, height / 2), axis=-1)


def intrinsics_from_fov(vertical_fov_deg: float, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """(..., 4) intrinsics of a centred camera with square pixels and a vertical field of view."""
    m11 = 1.0 / np.tan(np.radians(vertical_fov_deg) / 2)
    width, height = np.asarray(width, np.float64), np.asarray(height, np.float64)
    return intrinsics_from_projection(m11 * height / width, m11, width, height)


def projection_from_intrinsics(intrinsics: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """(..., 4) entries (m00, m11, m02, m12) of the OpenGL-style projection matrix (Unity's) of intrinsics at a size.

    m00 and m11 are what Unity's SOLO ``matrix`` records; m02 and m12 shift an off-centre principal point, which
    that matrix leaves out (both 0 for a centred camera). Inverse of ``intrinsics_from_projection`` when centred.
    """
    fx, fy, cx, cy = np.moveaxis(np.asarray(intrinsics, np.float64), -1, 0)
    width, height = np.asarray(width, np.float64), np.asarray(height, np.float64)
    return np.stack(np.broadcast_arrays(2 * fx / width, 2 * fy / height, 1 - 2 * cx / width, 2 * cy / height - 1), -1)


def view_slopes(intrinsics: np.ndarray, width: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the image lies in directions (x/z, y/z): its centre's (..., 2) and its half-extent per axis (..., 2).

    A point whose (x/z, y/z) is within ``half`` of ``centre`` on both axes projects inside the image.
    """
    fx, fy, cx, cy = np.moveaxis(np.asarray(intrinsics, np.float64), -1, 0)
    width, height = np.asarray(width, np.float64), np.asarray(height, np.float64)
    centre = np.stack(np.broadcast_arrays((width / 2 - cx) / fx, (cy - height / 2) / fy), -1)
    half = np.stack(np.broadcast_arrays(width / 2 / fx, height / 2 / fy), -1)
    return centre, half


def resize_intrinsics(intrinsics: np.ndarray, sizes: np.ndarray, new_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics (..., 4) of images of ``sizes`` (..., 2) (width, height) resized to ``new_size``.

    Each axis scales on its own (fx and cx by the width's factor, fy and cy by the height's), so a non-square
    image squeezed to the network's square input keeps an exact, anisotropic camera.
    """
    sizes = np.asarray(sizes, np.float64)
    scale_x = new_size[0] / sizes[..., 0]
    scale_y = new_size[1] / sizes[..., 1]
    return np.asarray(intrinsics, np.float64) * np.stack([scale_x, scale_y, scale_x, scale_y], axis=-1)


def pinhole_pixels(points: Array, intrinsics: Array) -> tuple[Array, Array]:
    """(u, v), each (..., P), of camera-frame points (..., P, 3) seen with intrinsics (..., 4) fx, fy, cx, cy.

    The one statement of cubepose's projection (Unity's frame, y up: v = cy - fy y / z); plain arithmetic
    and indexing, so numpy arrays and torch tensors (training targets, the PnP solver) share it.
    """
    fx, fy, cx, cy = (intrinsics[..., i, None] for i in range(4))
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return cx + fx * x / z, cy - fy * y / z


def project_with_intrinsics(points: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., P, 3) -> pixels (..., P, 2) with intrinsics (..., 4)."""
    u, v = pinhole_pixels(np.asarray(points, np.float64), np.asarray(intrinsics, np.float64))
    return np.stack([u, v], axis=-1)


def unity_euler_angles(q: np.ndarray) -> np.ndarray:
    """Euler angles (..., 3) in degrees about x (pitch), y (yaw), z (roll), composed as Unity does: R = Ry Rx Rz."""
    r = quaternion_to_matrix(q)
    pitch = np.arcsin(np.clip(-r[..., 1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[..., 0, 2], r[..., 2, 2])
    roll = np.arctan2(r[..., 1, 0], r[..., 1, 1])
    return np.degrees(np.stack([pitch, yaw, roll], axis=-1))


def axis_angle_quaternions(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) x, y, z, w of rotations by ``angle`` radians about unit ``axis`` (..., 3)."""
    angle = np.asarray(angle, np.float64)[..., None]
    return np.concatenate([np.asarray(axis, np.float64) * np.sin(angle / 2), np.cos(angle / 2)], axis=-1)


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products a * b (..., 4) in x, y, z, w order: the rotation b followed by a."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, np.float64), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, np.float64), -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )
