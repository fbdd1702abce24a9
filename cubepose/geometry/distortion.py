"""Lens distortion: OpenCV's model (ROS ``plumb_bob`` and ``rational_polynomial``) on pixels, both ways.

A camera with distortion is handed around as a (..., 12) tensor: fx, fy, cx, cy and the 8 coefficients
k1, k2, p1, p2, k3, k4, k5, k6 (``plumb_bob`` has k4 = k5 = k6 = 0); a pinhole camera stays (..., 4). The model
acts on the normalised coordinates (u - cx) / fx, (v - cy) / fy with v growing downwards, in which a crop or a
resize of the image is the identity: a cropped or resized camera keeps its coefficients unchanged, and the
half-pixel difference between OpenCV's principal point and cubepose's cancels. Both directions are kornia's
(``distort_points``, ``undistort_points``); the inverse is its fixed-point iteration, run long enough that the
round trip closes to 1e-3 px inside the image of any calibration ``Camera`` accepts.
"""

from __future__ import annotations

import torch
from kornia.geometry.calibration import distort_points, undistort_points

COEFFICIENTS = ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")
MODELS = {"plumb_bob": 5, "rational_polynomial": 8}  # ROS names -> how many of COEFFICIENTS each model uses
PINHOLE_COLUMNS = 4  # fx, fy, cx, cy
UNDISTORT_ITERATIONS = 20  # fixed-point steps: k1 = -0.3 at a 640x480 image's corner closes below 1e-6 px


def is_distorted(camera: torch.Tensor) -> bool:
    """Whether ``camera`` (..., 4 or 12) carries distortion coefficients (all zero still counts as carrying)."""
    return camera.shape[-1] > PINHOLE_COLUMNS


def distort(pixels: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Where the ideal pinhole ``pixels`` (B, K, 2) of cameras (B, 12) appear in the distorted image (B, K, 2)."""
    matrix = _matrix(camera)
    return distort_points(pixels.to(matrix), matrix, camera[:, PINHOLE_COLUMNS:].to(matrix))


def undistort(pixels: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """The ideal pinhole pixels (B, K, 2) of ``pixels`` (B, K, 2) seen in the distorted images of cameras
    (B, 12), in float64: what a PnP solve with fx, fy, cx, cy alone needs."""
    matrix = _matrix(camera)
    coefficients = camera[:, PINHOLE_COLUMNS:].to(matrix)
    return undistort_points(pixels.to(matrix), matrix, coefficients, num_iters=UNDISTORT_ITERATIONS)


def _matrix(camera: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) float64 camera matrices of ``camera`` (B, 4 or more) fx, fy, cx, cy."""
    fx, fy, cx, cy = camera[:, :PINHOLE_COLUMNS].double().unbind(-1)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = (torch.stack([fx, zero, cx], -1), torch.stack([zero, fy, cy], -1), torch.stack([zero, zero, one], -1))
    return torch.stack(rows, dim=-2)
