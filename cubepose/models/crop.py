"""The two-stage crop: where the cube is in the image (a window), a crop there, and the rotation
that turns an orientation seen along the crop's viewing ray into the camera frame.

A window is (B, 3): the cube centre's image position (cu, cv) in grid_sample's normalised
coordinates (-1 left/top edge, +1 right/bottom edge) and log s, where s is the crop's half side
as a share of the half image: ``margin`` x the radius of the object's bounding sphere in pixels
(``Box.radius`` of the configured ``object/dimensions``).
Crops of one window size show the cube at one scale whatever its distance, at the full input
resolution: what a rotation regressor needs and a downscaled whole image lacks.
"""

from __future__ import annotations

import roma
import torch
import torch.nn.functional as F

from cubepose.geometry.object import Box
from cubepose.geometry.projection import pinhole_pixels

MIN_DEPTH = 1e-3  # metres; keeps a (wrong) target behind the camera finite


def cube_windows(
    translation: torch.Tensor, camera: torch.Tensor, image_size: int, margin: float, box: Box | None = None
) -> torch.Tensor:
    """True windows (B, 3) of objects ``box`` (default: ``Box()``) at ``translation`` (B, 3) seen by ``camera``
    (B, 4: fx, fy, cx, cy in pixels of the square network input of side ``image_size``; Unity's frame,
    v = cy - fy y / z)."""
    radius = (box or Box()).radius  # metres
    z = translation[..., 2:].clamp_min(MIN_DEPTH)
    centre = torch.cat([translation[..., :2], z], -1)[:, None]  # (B, 1, 3): one point per image
    u, v = (pixels[:, 0] for pixels in pinhole_pixels(centre, camera))
    half_side = margin * camera[..., 1] * radius / z[..., 0]  # pixels
    return torch.stack([2 * u / image_size - 1, 2 * v / image_size - 1, torch.log(2 * half_side / image_size)], -1)


def crop_windows(images: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear crops (B, C, size, size) of ``images`` (B, C, H, W) at ``windows`` (B, 3); outside
    the image reads 0 (mid-grey in the [-1, 1] range). One batched affine_grid + grid_sample."""
    cu, cv, log_s = windows.unbind(-1)
    s = log_s.exp()
    zero = torch.zeros_like(s)
    theta = torch.stack([torch.stack([s, zero, cu], -1), torch.stack([zero, s, cv], -1)], -2)
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_camera_frame(ray_quaternions: torch.Tensor, along_ray: torch.Tensor) -> torch.Tensor:
    """Orientations regressed relative to each viewing ray (what a crop shows) -> camera frame."""
    return roma.quat_product(ray_quaternions, along_ray)
