"""Quaternions (x, y, z, w) and rotations: the one canonical sign (w >= 0) and the algebra the package shares.

All functions are batched over leading axes and do no I/O; ``canonical_sign`` takes numpy arrays and torch
tensors alike, so data, losses, models and exports apply the same convention.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

Array = TypeVar("Array", np.ndarray, "torch.Tensor")


def canonical_sign(q: Array) -> Array:
    """q or -q, whichever has w >= 0 (q and -q are one rotation): the convention of every quaternion cubepose
    reads, predicts or exports. Plain arithmetic, so numpy arrays and torch tensors (with gradients) share it."""
    return q * (1 - 2 * (q[..., 3:] < 0))


def canonicalize_quaternions(q: np.ndarray) -> np.ndarray:
    """Unit quaternions with the sign chosen so that w >= 0 (q and -q are one rotation)."""
    q = np.asarray(q, dtype=np.float64)
    return canonical_sign(q / np.linalg.norm(q, axis=-1, keepdims=True))


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
