"""Viewing rays: the rotation that turns the camera's optical axis onto the ray towards a point.

An object's appearance depends on its orientation relative to that ray (allocentric), not to the optical
axis: the two-stage model regresses it, and keypoint targets of a symmetric object are chosen by it.
"""

from __future__ import annotations

import roma
import torch
import torch.nn.functional as F


def ray_rotations(translation: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (B, 4, x y z w) of the smallest rotation turning the optical axis (0, 0, 1)
    onto the viewing ray towards ``translation`` (B, 3)."""
    ray = F.normalize(translation, dim=-1)
    axis = torch.cross(ray.new_tensor([0.0, 0.0, 1.0]).expand_as(ray), ray, dim=-1)  # |axis| = sin(angle)
    sin_angle = axis.norm(dim=-1, keepdim=True)
    angle = torch.atan2(sin_angle, ray[..., 2:3])
    return roma.rotvec_to_unitquat(axis / sin_angle.clamp_min(1e-12) * angle)
