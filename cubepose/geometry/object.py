"""The object whose pose is estimated: a box of configured edge lengths (``object/dimensions``) and
rotational symmetries (``object/symmetries``).

Losses, metrics, the crop window, overlays and the generator all take it from the config, so one
value sets the object's size everywhere. Its default (Unity's 0.1 m cube, no symmetries) is written here
once; the config schema's default is this one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from numbers import Real

import numpy as np

from cubepose.geometry.symmetries import SymmetrySpec, box_rotations, symmetry_group, symmetry_problem

DEFAULT_DIMENSIONS = (0.1, 0.1, 0.1)  # metres: Unity's UR3 demo cube, the default ``object/dimensions``
DEFAULT_SYMMETRY = "none"  # the default ``object/symmetries``

# Corner i of a box has sign bits (x, y, z) = (i >> 2, i >> 1, i) & 1: edges join corners one bit apart.
CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)


def box_corners(dimensions: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """The 8 corners (8, 3) of an axis-aligned box of edge lengths ``dimensions`` (x, y, z) centred at the origin."""
    return CORNER_SIGNS * (np.asarray(dimensions, dtype=np.float64) / 2)


def default_dimensions() -> tuple[float, float, float]:
    """The default ``object/dimensions`` (metres) as a fresh tuple."""
    return tuple(float(v) for v in DEFAULT_DIMENSIONS)


def _frozen_symmetry(spec: SymmetrySpec) -> SymmetrySpec:
    """A list of quaternions as a tuple of tuples, so that a Box stays hashable; a name as it is."""
    if isinstance(spec, (list, tuple, np.ndarray)):
        return tuple(tuple(v for v in item) if isinstance(item, (list, tuple, np.ndarray)) else item for item in spec)
    return spec


@dataclass(frozen=True)
class Box:
    """A box centred at its frame's origin with edges along x, y and z of ``dimensions`` (metres) and the
    rotations ``symmetry`` names (``object/symmetries``: none, cube, box or unit quaternions)."""

    dimensions: tuple[float, float, float] = field(default_factory=default_dimensions)
    symmetry: SymmetrySpec = DEFAULT_SYMMETRY

    def __post_init__(self) -> None:
        """Refuse sizes no box has and symmetries that are no rotations, whoever builds it."""
        values = tuple(self.dimensions) if isinstance(self.dimensions, tuple | list | np.ndarray) else ()
        numbers = all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values)
        if len(values) != 3 or not numbers:
            raise ValueError(f"a box takes 3 finite edge lengths X Y Z > 0 in metres, got {self.dimensions!r}")
        object.__setattr__(self, "dimensions", tuple(float(v) for v in values))
        object.__setattr__(self, "symmetry", _frozen_symmetry(self.symmetry))
        problem = symmetry_problem(self.symmetry)
        if problem is not None:
            raise ValueError(f"object/symmetries: {problem}")

    @classmethod
    def from_config(cls, config: dict) -> Box:
        """The configured object; a config without ``object`` or one of its keys (saved before the key
        existed) gets the default."""
        tree = config.get("object") or {}
        dimensions = tree.get("dimensions")
        return cls(
            default_dimensions() if dimensions is None else tuple(dimensions), tree.get("symmetries", DEFAULT_SYMMETRY)
        )

    @cached_property
    def symmetries(self) -> np.ndarray:
        """The rotations (K, 4) x, y, z, w (w >= 0, identity first) that leave the box looking the same:
        a pose is defined up to these (cubepose.geometry.symmetries)."""
        group = symmetry_group(self.symmetry, self.dimensions)
        group.flags.writeable = False
        return group

    @cached_property
    def shape_symmetries(self) -> np.ndarray:
        """The rotations (K, 4) that map the bare box onto itself (24 for a cube, 4 for three distinct edges),
        whatever its faces show: a keypoint model's corners are interchangeable under these."""
        group = box_rotations(self.dimensions)
        group.flags.writeable = False
        return group

    def corners(self) -> np.ndarray:
        """The 8 corners (8, 3), ordered by their (x, y, z) sign bits (see box_corners)."""
        return box_corners(self.dimensions)

    @property
    def diameter(self) -> float:
        """Length of the box's diagonal (m): ADD's accuracy threshold is a share of it."""
        return math.hypot(*self.dimensions)

    @property
    def radius(self) -> float:
        """Radius of the bounding sphere about the centre (m): what the two-stage crop window frames."""
        return self.diameter / 2
