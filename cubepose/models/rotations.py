"""Rotation representations a head can regress, found by name through ``ROTATIONS``.

Each maps the head's raw output (B, n) to unit quaternions (B, 4) in (x, y, z, w) order with
w >= 0, so losses, metrics and exports see quaternions whatever the network regresses.
``6d`` is Zhou et al.'s continuous representation (CVPR 2019): two 3-vectors made orthonormal
by Gram-Schmidt. Unlike a quaternion it has no q / -q ambiguity for the regressor to straddle;
roma (a maintained rotation library) does the Gram-Schmidt and the matrix-to-quaternion step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import roma
import torch

from cubepose.geometry.rotations import canonical_sign
from cubepose.registry import Registry

IDENTITY_QUATERNION = (0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Rotation:
    """A representation: its width as a head output and its map to unit quaternions."""

    size: int
    to_quaternion: Callable[[torch.Tensor], torch.Tensor]


ROTATIONS: Registry[Rotation] = Registry("rotation")


def normalize_quaternions(q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Unit quaternions along the last axis; a (near) zero vector maps to the identity (0, 0, 0, 1).

    A non-finite vector stays non-finite (never the identity), so a broken model is seen as broken.
    """
    norm = q.norm(dim=-1, keepdim=True)
    unit = q / norm.clamp_min(eps)
    identity = q.new_tensor(IDENTITY_QUATERNION).expand_as(q)
    return torch.where(norm <= eps, identity, unit)


def six_d_to_quaternion(x: torch.Tensor) -> torch.Tensor:
    """(B, 6): the first two columns of a rotation matrix, not yet orthonormal -> (B, 4) x, y, z, w."""
    columns = x.reshape(*x.shape[:-1], 2, 3).transpose(-1, -2)  # (B, 3, 2)
    matrix = roma.special_gramschmidt(columns, epsilon=1e-8)
    return canonical_sign(roma.rotmat_to_unitquat(matrix))


ROTATIONS.register("quaternion")(Rotation(4, normalize_quaternions))
ROTATIONS.register("6d")(Rotation(6, six_d_to_quaternion))
