"""The camera that takes the images: a pinhole's intrinsics fx, fy, cx, cy in pixels and, when stated, the image size.

The one camera class: ``cubepose generate --camera W H FX FY CX CY`` renders with it and the labels record it,
prediction checks the camera a caller gives (four numbers, a camera file, query parameters) with it, and
``data/camera`` is read into it. Every form is checked on construction, so no code holds a camera no image can
have; refusals are ``CameraError`` (a ValueError) naming the values as they were given. Unity's camera frame:
u = cx + fx x / z, v = cy - fy y / z (x right, y up, z forward; v grows downward). Pixel i spans [i, i + 1), so
a centred camera has cx = W / 2; OpenCV and ROS put pixel centres on whole numbers (their cx, cy are 0.5 less:
cubepose.geometry.conventions, applied where their files are read and written). A real lens adds ``distortion``
(cubepose.geometry.distortion): OpenCV's coefficients, which the half-pixel shift leaves unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import InitVar, dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch

from cubepose.geometry.distortion import COEFFICIENTS, MODELS, distort, undistort
from cubepose.geometry.projection import intrinsics_from_fov

KEYS = ("fx", "fy", "cx", "cy")
SIZE_KEYS = ("width", "height")
DISTORTION_KEY = "distortion"
MAX_INTRINSIC = 1e7  # pixels: beyond any real lens and sensor, far inside float32
MAX_COEFFICIENT = 1e4  # beyond any real lens; larger values only come from a broken file
FOLD_TOLERANCE = 0.01  # pixels: an image point whose undistortion does not distort back this close is ambiguous
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
    distortion: tuple[float, ...] | None = None  # k1, k2, p1, p2, k3, k4, k5, k6 (4, 5 or 8 given; rest 0)
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
        if self.distortion is not None:
            object.__setattr__(self, "distortion", _coefficients(self.distortion))
            fold = self._fold()
            if fold is not None:
                raise CameraError(fold)

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
        """``{fx, fy, cx, cy}``, optionally both ``width`` and ``height`` and a ``distortion`` list (OpenCV's
        k1 k2 p1 p2 [k3 [k4 k5 k6]]), as camera files, JSON requests, query parameters and ``data/camera`` give
        them; numbers may be strings (PyYAML reads ``1e3`` as one)."""
        unknown = set(mapping) - set(KEYS) - set(SIZE_KEYS) - {DISTORTION_KEY}
        missing = [key for key in KEYS if key not in mapping]
        if unknown or missing or (("width" in mapping) != ("height" in mapping)):
            raise CameraKeysError(
                f"a camera needs fx, fy, cx, cy (and optionally both width and height, and a distortion), got keys "
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
        distortion = given.get(DISTORTION_KEY)
        if isinstance(distortion, (str, bytes)) or (distortion is not None and not isinstance(distortion, Iterable)):
            raise CameraError(f"camera distortion must be a list of 4, 5 or 8 numbers, got {distortion!r}")
        return cls(width=width, height=height, **numbers, distortion=distortion, principal_inside=False)

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

    @property
    def parameters(self) -> np.ndarray:
        """What a keypoint model solves with: (4,) ``intrinsics``, or (12,) with the 8 distortion coefficients
        after them when the camera has a lens distortion (cubepose.geometry.distortion)."""
        extra = () if self.distortion is None else self.distortion
        return np.concatenate([self.intrinsics, np.asarray(extra, np.float64)])

    @property
    def distortion_model(self) -> str | None:
        """The ROS name of the distortion: ``plumb_bob`` (k4 = k5 = k6 = 0), ``rational_polynomial``, or None."""
        if self.distortion is None:
            return None
        return "plumb_bob" if not any(self.distortion[MODELS["plumb_bob"] :]) else "rational_polynomial"

    def undistorted(self) -> Camera:
        """This camera with an ideal lens: the pinhole the distorted image is corrected to."""
        return Camera(width=self.width, height=self.height, **dict(zip(KEYS, self.intrinsics, strict=True)))

    def _fold(self) -> str | None:
        """Why the distortion cannot be undone inside the stated image (None when it can, or without a size):
        a point of the image border whose undistortion does not distort back onto it, as when a polynomial
        turns back within the image and two scene points land on one pixel."""
        if self.width is None:
            return None
        along = torch.linspace(0, 1, 65, dtype=torch.float64)
        w, h, zeros, ones = float(self.width), float(self.height), torch.zeros(65), torch.ones(65)
        border = torch.cat(
            [
                torch.stack([along * w, zeros], -1),
                torch.stack([along * w, ones * h], -1),
                torch.stack([zeros, along * h], -1),
                torch.stack([ones * w, along * h], -1),
            ]
        ).double()[None]
        camera = torch.as_tensor(self.parameters)[None]
        ideal = undistort(border, camera)
        gap = (distort(ideal, camera) - border).norm(dim=-1).nan_to_num(torch.inf).max().item()
        if gap <= FOLD_TOLERANCE:
            return None
        shown = ", ".join(f"{key} {value:g}" for key, value in zip(COEFFICIENTS, self.distortion, strict=True))
        return (
            f"the distortion ({shown}) cannot be undone at the border of the {self.width}x{self.height} image "
            f"(a point there is {gap:.3g} px off after undistorting and distorting back): the polynomial folds "
            "inside the image; check that the coefficients belong to this camera and its image size"
        )


def _coefficients(values: Any) -> tuple[float, ...]:
    """The 8 coefficients k1, k2, p1, p2, k3, k4, k5, k6 of 4, 5 or 8 given (the rest 0), each finite."""
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        shown = f"got {values!r}"
        raise CameraError(f"the distortion must be 4, 5 or 8 numbers k1 k2 p1 p2 [k3 [k4 k5 k6]], {shown}") from None
    if len(numbers) not in (4, 5, 8) or not all(math.isfinite(v) and abs(v) <= MAX_COEFFICIENT for v in numbers):
        raise CameraError(
            f"the distortion must be 4, 5 or 8 finite numbers k1 k2 p1 p2 [k3 [k4 k5 k6]] of at most "
            f"{MAX_COEFFICIENT:g}, got {values!r}"
        )
    return tuple(numbers + [0.0] * (len(COEFFICIENTS) - len(numbers)))


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
