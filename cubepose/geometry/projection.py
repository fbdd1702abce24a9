"""Pinhole projection in Unity's camera frame: intrinsics, Unity's projection matrix, points to pixels.

Unity's camera frame: x right, y up, z forward; image v grows downward. A camera is (fx, fy, cx, cy) in
pixels of one image size: u = cx + fx * x / z, v = cy - fy * y / z. All functions are batched over leading
axes and do no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from cubepose.geometry.rotations import quaternion_to_matrix

if TYPE_CHECKING:
    import torch

Array = TypeVar("Array", np.ndarray, "torch.Tensor")  # pinhole_pixels takes either

# Unity's camera frame (y up) <-> OpenCV's (y down, as PnP solvers and BOP use it): negate y

OPENCV_AXES = np.array([1.0, -1.0, 1.0])


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
    """Intrinsics (..., 4) of images of ``sizes`` (..., 2) (width, height) resized to ``new_size``; the distortion
    coefficients of a camera (..., 12) (cubepose.geometry.distortion) are kept.

    Each axis scales on its own (fx and cx by the width's factor, fy and cy by the height's), so a non-square
    image squeezed to the network's square input keeps an exact, anisotropic camera.
    """
    sizes = np.asarray(sizes, np.float64)
    scale_x = new_size[0] / sizes[..., 0]
    scale_y = new_size[1] / sizes[..., 1]
    intrinsics = np.asarray(intrinsics, np.float64)
    scaled = intrinsics[..., :4] * np.stack([scale_x, scale_y, scale_x, scale_y], axis=-1)
    lens = np.broadcast_to(intrinsics[..., 4:], (*scaled.shape[:-1], intrinsics.shape[-1] - 4))
    return np.concatenate([scaled, lens], axis=-1)  # distortion coefficients (if any) do not change with the size


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
