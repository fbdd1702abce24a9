"""The camera that takes the images: a pinhole's intrinsics fx, fy, cx, cy in pixels and, when stated, the image size.

The one camera class: ``cubepose generate --camera W H FX FY CX CY`` renders with it and the labels record it,
prediction checks the camera a caller gives (four numbers, a camera file, query parameters) with it, and
``data/camera`` is read into it. Every form is checked on construction, so no code holds a camera no image can
have; refusals are ``CameraError`` (a ValueError) naming the values as they were given. Unity's camera frame:
u = cx + fx x / z, v = cy - fy y / z (x right, y up, z forward; v grows downward). Pixel i spans [i, i + 1), so
a centred camera has cx = W / 2; OpenCV puts pixel centres on whole numbers (its cx is 0.5 less).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import InitVar, dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

from cubepose.geometry.projection import intrinsics_from_fov

KEYS = ("fx", "fy", "cx", "cy")
SIZE_KEYS = ("width", "height")
MAX_INTRINSIC = 1e7  # pixels: beyond any real lens and sensor, far inside float32
NAMES = {True: ("fx, fy", "cx, cy"), False: ("FX FY", "CX CY")}  # refusals name values by key, or as --camera does


class CameraError(ValueError):
    """A camera no image can have, or one given in a form no constructor reads; the message names the values."""


class CameraKeysError(CameraError):
    """A mapping whose keys are not fx, fy, cx, cy (and optionally both width and height): callers add the form."""


@dataclass(frozen=True, kw_only=True)
class Camera:
    """Focal lengths ``fx``, ``fy`` and principal point ``cx``, ``cy`` in pixels of ``width`` x ``height`` images
    (both None when the size is not stated).

    Any aspect ratio, fx != fy and an off-centre principal point are allowed. A camera to render with (built
    from its fields, ``from_values`` or ``from_fov``) must have its principal point inside its image; one a
    caller describes by key (``from_mapping``, ``from_intrinsics``) need not (a crop of an image is such a
    camera). Fields are keywords; the ``from_*`` constructors read other forms.
    """

    width: int | None = None
    height: int | None = None
    fx: float
    fy: float
    cx: float
    cy: float
    principal_inside: InitVar[bool] = True  # the principal point must lie inside the stated image

    def __post_init__(self, principal_inside: bool) -> None:
        """Refuse a camera no image can have, whoever builds it (command line, a manifest, Python)."""
        intrinsics = (self.fx, self.fy, self.cx, self.cy)
        problem = _problem(self.width, self.height, intrinsics, keyed=False, inside=principal_inside)
        if problem is not None:
            raise CameraError(problem)
        if self.width is not None:
            object.__setattr__(self, "width", int(self.width))
            object.__setattr__(self, "height", int(self.height))
        for name in KEYS:
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> Camera:
        """W H FX FY CX CY, the generator's ``--camera`` order; whole-numbered floats are taken as sizes."""
        values = tuple(values)
        if len(values) != 6:
            raise CameraError(f"a camera is six numbers W H FX FY CX CY, got {len(values)}")
        width, height = (_whole_as_int(v) for v in values[:2])
        return cls(width=width, height=height, **dict(zip(KEYS, values[2:], strict=True)))

    @classmethod
    def from_intrinsics(cls, values: Iterable[Any]) -> Camera:
        """Four numbers fx, fy, cx, cy in pixels (numeric strings count), with no stated image size."""
        values = list(values)
        if len(values) != 4:
            raise CameraError(f"a camera is four numbers fx, fy, cx, cy in pixels, got {len(values)}")
        return cls._from_keyed(dict(zip(KEYS, values, strict=True)))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Camera:
        """``{fx, fy, cx, cy}`` and optionally both ``width`` and ``height``, as camera files, JSON requests, query
        parameters and ``data/camera`` give them; numbers may be strings (PyYAML reads ``1e3`` as one)."""
        unknown = set(mapping) - set(KEYS) - set(SIZE_KEYS)
        missing = [key for key in KEYS if key not in mapping]
        if unknown or missing or (("width" in mapping) != ("height" in mapping)):
            raise CameraKeysError(
                f"a camera needs fx, fy, cx, cy (and optionally both width and height), got keys "
                f"{', '.join(map(str, mapping)) or 'none'}"
            )
        return cls._from_keyed(mapping)

    @classmethod
    def _from_keyed(cls, given: Mapping[str, Any]) -> Camera:
        """A camera from values by key, each a finite number; refusals name the keys as given (fx, not FX)."""
        numbers = {key: _number(given[key], key) for key in (*KEYS, *SIZE_KEYS) if key in given}
        width, height = (_whole_as_int(numbers.pop(key)) if key in numbers else None for key in SIZE_KEYS)
        problem = _problem(width, height, tuple(numbers[key] for key in KEYS), keyed=True, inside=False)
        if problem is not None:
            raise CameraError(problem)
        return cls(width=width, height=height, **numbers, principal_inside=False)

    @classmethod
    def from_fov(cls, vertical_fov_deg: float, width: int, height: int) -> Camera:
        """A centred camera with square pixels and the given vertical field of view (Unity's default camera: 60)."""
        intrinsics = (float(v) for v in intrinsics_from_fov(vertical_fov_deg, width, height))
        return cls(width=width, height=height, **dict(zip(KEYS, intrinsics, strict=True)))

    def values(self) -> tuple:
        """W H FX FY CX CY, the order of ``--camera``; FX FY CX CY when the size is not stated."""
        size = () if self.width is None else (self.width, self.height)
        return (*size, self.fx, self.fy, self.cx, self.cy)

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) in pixels; None when not stated."""
        return None if self.width is None else (self.width, self.height)

    @property
    def intrinsics(self) -> np.ndarray:
        """(4,) fx, fy, cx, cy in pixels of this camera's images."""
        return np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float64)


def describe_intrinsics(intrinsics: Iterable[Any]) -> str:
    """``fx 27.5, fy 33.33, cx 15, cy 16.67``: four intrinsics as errors and logs show them."""
    return ", ".join(f"{key} {float(v):.4g}" for key, v in zip(KEYS, intrinsics, strict=True))


def _problem(width: Any, height: Any, intrinsics: tuple, keyed: bool, inside: bool) -> str | None:
    """Why no image can have this camera (None when one can), naming the values as they were given: by key
    (``keyed``: a mapping or four numbers, the focal lengths checked before the size) or in the order of
    ``--camera W H FX FY CX CY`` (the size first); ``inside``: the principal point must lie in the image."""
    sized = width is not None or height is not None
    values = (width, height, *intrinsics) if sized else intrinsics
    typed = " ".join(f"{v:g}" if _is_number(v) else repr(v) for v in values)
    bad_size = None
    if sized and not all(_is_number(v) and isinstance(v, Integral) and v > 0 for v in (width, height)):
        bad_size = (
            f"width and height must be whole numbers of pixels above 0, got {width:g}x{height:g}"
            if keyed
            else f"the width and height must be whole numbers of pixels above 0, got {typed}"
        )
    if bad_size is not None and not keyed:
        return bad_size
    if not all(_is_number(v) and math.isfinite(v) for v in intrinsics):
        return f"FX FY CX CY must be finite numbers of pixels, got {typed}"  # keyed values are parsed finite
    (focal, principal), shown = NAMES[keyed], describe_intrinsics(intrinsics) if keyed else typed
    fx, fy, cx, cy = intrinsics
    if not (fx > 0 and fy > 0):
        return f"the focal lengths {focal} must be above 0 pixels, got {shown}"
    if not all(abs(v) <= MAX_INTRINSIC for v in intrinsics):  # 1e308 would become inf in float32
        return f"{focal}, {principal} must be at most {MAX_INTRINSIC:g} pixels, got {shown}"
    if bad_size is not None:
        return bad_size
    if inside and sized and not (0 < cx < width and 0 < cy < height):
        return f"the principal point {principal} must lie inside the {width}x{height} image, got {shown}"
    return None


def _is_number(value: Any) -> bool:
    """A real number, not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool)


def _whole_as_int(value: Any) -> Any:
    """``value`` as an int when it is a finite whole number (600.0 -> 600), else unchanged for the check to name."""
    return int(value) if _is_number(value) and math.isfinite(value) and float(value).is_integer() else value


def _number(value: Any, key: str) -> float:
    """``value`` as a finite float (PyYAML reads ``1e3`` as a string, so numeric strings count)."""
    try:
        number = float(value) if isinstance(value, (Real, str)) and not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise CameraError(f"camera {key} must be a finite number of pixels, got {value!r}")
    return number
