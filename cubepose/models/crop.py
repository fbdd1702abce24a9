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
    return windows_at(torch.stack([u, v], -1), margin * camera[..., 1] * radius / z[..., 0], image_size)


def windows_at(centres: torch.Tensor, half_sides: torch.Tensor, image_size: int) -> torch.Tensor:
    """Windows (B, 3) of crops centred on ``centres`` (B, 2) u, v with half sides ``half_sides`` (B,), both in
    pixels of the square input of side ``image_size``."""
    return torch.cat([2 * centres / image_size - 1, torch.log(2 * half_sides / image_size)[:, None]], -1)


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


def crop_cameras(camera: torch.Tensor, windows: torch.Tensor, image_size: int, crop_size: int) -> torch.Tensor:
    """The camera (B, 4) fx, fy, cx, cy of each ``crop_windows`` crop of side ``crop_size``, in its pixels: the
    input's ``camera`` (B, 4) with its focal lengths scaled and its principal point moved, so a PnP solve on the
    crop gives the pose in the input camera's frame (a camera (B, 12) keeps its distortion coefficients, which
    a crop leaves as they are). Inverse of ``to_input_pixels``."""
    scale = crop_size / (windows[:, 2].exp() * image_size)  # crop pixels per input pixel
    corner = (windows[:, :2] + 1 - windows[:, 2:].exp()) * image_size / 2  # input pixel of the crop's top-left
    focal, principal = camera[:, :2] * scale[:, None], (camera[:, 2:4] - corner) * scale[:, None]
    return torch.cat([focal, principal, camera[:, 4:]], dim=-1)  # distortion coefficients stay as they are


def to_input_pixels(pixels: torch.Tensor, windows: torch.Tensor, image_size: int, crop_size: int) -> torch.Tensor:
    """Pixels (B, K, 2) of ``crop_windows`` crops at ``windows`` (B, 3) -> pixels of the input image."""
    side = windows[:, 2].exp()[:, None, None]
    return pixels * side * image_size / crop_size + (windows[:, None, :2] + 1 - side) * image_size / 2
