"""Rendering through a distorted lens: draw an ideal pinhole image large enough, then warp it as the lens would.

OpenGL only draws pinhole images. A camera with distortion (cubepose.geometry.distortion) sees, at each of its
pixels, the scene point whose ideal pinhole pixel is that pixel undistorted. So the scene is drawn by the same
camera without distortion on a canvas that holds every such point (``canvas_camera``: barrel distortion sees past
the pinhole image's border), and each output pixel samples the canvas there (``LensWarp``, bilinear through
OpenCV's ``remap``). Labels record the poses, the pinhole intrinsics and the distortion beside them
(``cubepose_distortion``), and ``camera_info.yaml`` the whole camera.
"""

from __future__ import annotations

import math
from functools import cached_property

import cv2
import numpy as np
import torch

from cubepose.geometry.camera import Camera
from cubepose.geometry.distortion import undistort

CANVAS_MARGIN = 2  # pixels beyond the farthest undistorted point: bilinear sampling reads one neighbour
MAX_CANVAS_SCALE = 3.0  # a canvas beyond 3x the image per side means the lens sees nearly a hemisphere: refused


class LensWarp:
    """The ideal canvas a distorted ``camera`` (with image size and distortion) is rendered on, and the warp that
    turns a canvas image into what the camera sees."""

    def __init__(self, camera: Camera) -> None:
        if camera.distortion is None or camera.size is None:
            raise ValueError("LensWarp needs a camera with an image size and a distortion")
        self.camera = camera

    @cached_property
    def _ideal(self) -> np.ndarray:
        """(H, W, 2) float64: the ideal pinhole pixel (cubepose's convention) each output pixel's centre sees."""
        width, height = self.camera.size
        u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        centres = torch.from_numpy(np.stack([u, v], axis=-1).reshape(1, -1, 2))
        ideal = undistort(centres, torch.as_tensor(self.camera.parameters)[None])
        return ideal[0].numpy().reshape(height, width, 2)

    @cached_property
    def canvas(self) -> Camera:
        """The pinhole camera of the canvas: this camera's focal lengths, its image grown on each side to hold
        every ideal pixel the output samples, and the principal point moved with it."""
        width, height = self.camera.size
        ideal = self._ideal
        left = max(0, math.ceil(-ideal[..., 0].min()) + CANVAS_MARGIN)
        top = max(0, math.ceil(-ideal[..., 1].min()) + CANVAS_MARGIN)
        right = max(0, math.ceil(ideal[..., 0].max() - width) + CANVAS_MARGIN)
        bottom = max(0, math.ceil(ideal[..., 1].max() - height) + CANVAS_MARGIN)
        size = (width + left + right, height + top + bottom)
        if size[0] > MAX_CANVAS_SCALE * width or size[1] > MAX_CANVAS_SCALE * height:
            raise ValueError(
                f"the distortion {self.camera.distortion} of the {width}x{height} camera sees too wide a view for "
                f"pinhole rendering (a {size[0]}x{size[1]} canvas); check the coefficients"
            )
        camera = self.camera
        return Camera(
            width=size[0], height=size[1], fx=camera.fx, fy=camera.fy, cx=camera.cx + left, cy=camera.cy + top
        )

    @cached_property
    def _maps(self) -> tuple[np.ndarray, np.ndarray]:
        """OpenCV ``remap`` maps (H, W) float32: the canvas position each output pixel samples, in OpenCV's pixel
        coordinates (pixel centres on whole numbers)."""
        shift_x = self.canvas.cx - self.camera.cx
        shift_y = self.canvas.cy - self.camera.cy
        ideal = self._ideal
        return (ideal[..., 0] + shift_x - 0.5).astype(np.float32), (ideal[..., 1] + shift_y - 0.5).astype(np.float32)

    def __call__(self, canvas_image: np.ndarray) -> np.ndarray:
        """The camera's image (H, W, C) uint8 from an image rendered with ``canvas``."""
        expected = (self.canvas.height, self.canvas.width)
        if canvas_image.shape[:2] != expected:
            raise ValueError(f"the canvas image is {canvas_image.shape[:2]}, expected {expected} (rows, columns)")
        map_x, map_y = self._maps
        return cv2.remap(canvas_image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
