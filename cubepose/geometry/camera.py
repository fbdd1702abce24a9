"""The camera that takes the images: a pinhole of given resolution and intrinsics, in pixels.

``cubepose generate --camera W H FX FY CX CY`` renders with it, and the labels record it, so
training reads the user's own camera back. Unity's camera frame: u = cx + fx x / z,
v = cy - fy y / z (x right, y up, z forward; v grows downward). Pixel i spans [i, i + 1), so a
centred camera has cx = W / 2; OpenCV puts pixel centres on whole numbers (its cx is 0.5 less).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from cubepose.geometry.projection import intrinsics_from_fov


@dataclass(frozen=True)
class Camera:
    """``width`` x ``height`` pixels with focal lengths ``fx``, ``fy`` and principal point ``cx``, ``cy`` (pixels).

    Any aspect ratio, fx != fy and an off-centre principal point are allowed; the principal point must lie
    inside the image.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        """Refuse a camera no image can have, whoever builds it (command line, an export, Python)."""
        sizes = (self.width, self.height)
        if not all(isinstance(v, Integral) and not isinstance(v, bool) and v > 0 for v in sizes):
            raise ValueError(f"the width and height must be whole numbers of pixels above 0, got {self._shown()}")
        numbers = (self.fx, self.fy, self.cx, self.cy)
        if not all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
            raise ValueError(f"FX FY CX CY must be finite numbers of pixels, got {self._shown()}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"the focal lengths FX FY must be above 0 pixels, got {self._shown()}")
        if not (0 < self.cx < self.width and 0 < self.cy < self.height):
            raise ValueError(
                f"the principal point CX CY must lie inside the {self.width}x{self.height} image, got {self._shown()}"
            )
        for name in ("width", "height"):
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def _shown(self) -> str:
        """The six values as the user typed them: W H FX FY CX CY."""
        return " ".join(f"{v:g}" if isinstance(v, Real) else repr(v) for v in self.values())

    @classmethod
    def from_fov(cls, vertical_fov_deg: float, width: int, height: int) -> Camera:
        """A centred camera with square pixels and the given vertical field of view (Unity's default camera: 60)."""
        return cls(width, height, *(float(v) for v in intrinsics_from_fov(vertical_fov_deg, width, height)))

    def values(self) -> tuple:
        """W H FX FY CX CY, the order of ``--camera``."""
        return (self.width, self.height, self.fx, self.fy, self.cx, self.cy)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return (self.width, self.height)

    @property
    def intrinsics(self) -> np.ndarray:
        """(4,) fx, fy, cx, cy in pixels of this camera's images."""
        return np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float64)
