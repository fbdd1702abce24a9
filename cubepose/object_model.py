"""The object whose pose is estimated: a box of configured edge lengths (``object/dimensions``).

Losses, metrics, the crop window, overlays and the generator all take it from the config, so one
value sets the object's size everywhere. Its default (Unity's 0.1 m cube) is the schema's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real

import numpy as np

from cubepose.config import SCHEMA
from cubepose.geometry import box_corners


def default_dimensions() -> tuple[float, float, float]:
    """The schema's default ``object/dimensions`` (metres): the one place the default size is written."""
    return tuple(float(v) for v in SCHEMA["object"]["dimensions"].default)


@dataclass(frozen=True)
class Box:
    """A box centred at its frame's origin with edges along x, y and z of ``dimensions`` (metres)."""

    dimensions: tuple[float, float, float] = field(default_factory=default_dimensions)

    def __post_init__(self) -> None:
        """Refuse sizes no box has, whoever builds it (config, command line or Python)."""
        values = tuple(self.dimensions) if isinstance(self.dimensions, tuple | list | np.ndarray) else ()
        numbers = all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values)
        if len(values) != 3 or not numbers:
            raise ValueError(f"a box takes 3 finite edge lengths X Y Z > 0 in metres, got {self.dimensions!r}")
        object.__setattr__(self, "dimensions", tuple(float(v) for v in values))

    @classmethod
    def from_config(cls, config: dict) -> Box:
        """The configured object; a config without ``object`` (saved before the key existed) gets the default."""
        dimensions = (config.get("object") or {}).get("dimensions")
        return cls() if dimensions is None else cls(tuple(dimensions))

    def corners(self) -> np.ndarray:
        """The 8 corners (8, 3), ordered by their (x, y, z) sign bits (see geometry.box_corners)."""
        return box_corners(self.dimensions)

    @property
    def diameter(self) -> float:
        """Length of the box's diagonal (m): ADD's accuracy threshold is a share of it."""
        return math.hypot(*self.dimensions)

    @property
    def radius(self) -> float:
        """Radius of the bounding sphere about the centre (m): what the two-stage crop window frames."""
        return self.diameter / 2
