"""The camera a model was trained for: recorded in its checkpoint, checked when predicting.

A regression model predicts poses in the frame of its training camera: an image from a camera with
another focal length or principal point (relative to the image size) gets a wrong translation, so
prediction compares the camera it is given with the recorded one and refuses another.

A checkpoint's ``camera`` entry (plain lists and floats, readable with ``weights_only=True``)::

    {"intrinsics": [fx, fy, cx, cy],  # median over the training examples
     "min": [...], "max": [...],      # their range per value (equal to the median for one camera)
     "image_size": S,                 # intrinsics are in pixels of the network's S x S input
     "spread": 0.0,                   # largest deviation of an example from the median (as TOLERANCE measures)
     "examples": N}

Deviations are measured as the check measures them: a focal length relative to the training one, a
principal point as a share of the input's side.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cubepose.geometry.camera import KEYS, Camera, describe_intrinsics
from cubepose.geometry.projection import resize_intrinsics

TOLERANCE = 0.02  # focal lengths within 2 % of the training ones, principal point within 2 % of the side


# -- recording ----------------------------------------------------------------------------


def record_training_camera(cameras: np.ndarray, image_size: int) -> dict | None:
    """The ``camera`` entry of a checkpoint from its training examples' intrinsics (N, 4) in network-input pixels
    (a lens's coefficients after them, (N, 12), are not part of it).

    None when no example has a finite camera (nothing trustworthy to check against).
    """
    cameras = np.asarray(cameras, np.float64)
    cameras = cameras.reshape(-1, cameras.shape[-1])[:, :4]
    cameras = cameras[np.isfinite(cameras).all(axis=1)]
    if not len(cameras):
        return None
    median = np.median(cameras, axis=0)
    spread = _deviations(cameras, median, median, median, image_size).max()
    return {
        "intrinsics": median.tolist(),
        "min": cameras.min(axis=0).tolist(),
        "max": cameras.max(axis=0).tolist(),
        "image_size": int(image_size),
        "spread": float(spread),
        "examples": len(cameras),
    }


def describe_training_camera(recorded: dict | None) -> str:
    """The training camera in network-input pixels as one phrase for logs and errors; ``unknown`` without one."""
    if recorded is None:
        return "unknown"
    values, size = describe_intrinsics(recorded["intrinsics"]), recorded["image_size"]
    if recorded["spread"] <= TOLERANCE / 10:
        return f"{values} in its {size} px input (one camera, {recorded['examples']} examples)"
    return f"{values} in its {size} px input (the median; its cameras vary by up to {recorded['spread']:.1%})"


# -- checking -----------------------------------------------------------------------------


def camera_errors(
    given: Camera,
    sizes: np.ndarray,
    names: Sequence[str],
    recorded: dict,
    tolerance: float = TOLERANCE,
) -> list[str | None]:
    """Per image (``sizes`` (N, 2) width, height): None when ``given`` matches the training camera ``recorded``
    once scaled to the network input as the training data was (per axis), else why, with both cameras."""
    sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
    side = recorded["image_size"]
    scaled = resize_intrinsics(given.intrinsics, sizes, (side, side))
    deviations = camera_deviations(scaled, recorded)
    errors: list[str | None] = [None] * len(sizes)
    for i in np.flatnonzero(deviations.max(axis=1) > tolerance):
        errors[i] = _mismatch(names[i], given.intrinsics, sizes[i], scaled[i], deviations[i], recorded, tolerance)
    for i, error in enumerate(size_errors(given, sizes, names)):
        errors[i] = error or errors[i]
    return errors


def size_errors(given: Camera, sizes: np.ndarray, names: Sequence[str]) -> list[str | None]:
    """Per image (``sizes`` (N, 2)): None, or why it is refused when ``given`` states another image size."""
    sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
    errors: list[str | None] = [None] * len(sizes)
    if given.size is not None:
        for i in np.flatnonzero((sizes != given.size).any(axis=1)):
            errors[i] = _wrong_size(names[i], sizes[i], given.size)
    return errors


def camera_deviations(cameras: np.ndarray, recorded: dict) -> np.ndarray:
    """(N, 4) how far network-input intrinsics (N, 4) lie outside the training cameras' range: fx, fy relative
    to the training focal length, cx, cy as a share of the side (0 inside the range)."""
    trained, low, high = (np.asarray(recorded[key], np.float64) for key in ("intrinsics", "min", "max"))
    return _deviations(cameras, trained, low, high, recorded["image_size"])


def _deviations(cameras: np.ndarray, trained: np.ndarray, low: np.ndarray, high: np.ndarray, side: int) -> np.ndarray:
    """Distances of ``cameras`` (N, 4) outside [low, high], over (fx, fy, side, side) of ``trained``."""
    outside = np.maximum(0.0, np.maximum(low - cameras, cameras - high))
    return outside / np.array([trained[0], trained[1], side, side])


def _mismatch(
    name: str,
    given: np.ndarray,
    size: np.ndarray,
    scaled: np.ndarray,
    deviation: np.ndarray,
    recorded: dict,
    tolerance: float,
) -> str:
    """Why one image is refused: both cameras at its size and in the network input, the worst value, the fix."""
    width, height = (int(v) for v in size)
    side = recorded["image_size"]
    at_size = resize_intrinsics(recorded["intrinsics"], (side, side), (width, height))
    worst = int(np.argmax(deviation))
    off = (
        f"{KEYS[worst]} differs by {deviation[worst]:.1%}"
        if worst < 2
        else f"{KEYS[worst]} is off by {deviation[worst]:.1%} of the side"
    )
    command = " ".join(f"{v:g}" for v in (width, height, *given))
    return (
        f"{name}: its camera is not the one the model was trained for, so its pose would be wrong: given "
        f"{describe_intrinsics(given)} for {width}x{height} px ({describe_intrinsics(scaled)} in the {side} px "
        f"network input); the model was trained for {describe_training_camera(recorded)}, i.e. "
        f"{describe_intrinsics(at_size)} at {width}x{height} px: {off} (tolerance {tolerance:.0%}). Retrain with "
        f"data from this camera (e.g. cubepose generate --camera {command} ...), or pass this camera's true intrinsics"
    )


def _wrong_size(name: str, size: np.ndarray, expected: tuple[int, int]) -> str:
    """Why an image whose size is not the one the camera was given for is refused."""
    width, height = (int(v) for v in size)
    return (
        f"{name} is {width}x{height} px but the camera was given for {expected[0]}x{expected[1]} px images; "
        "give the intrinsics of this image size (or drop width and height from the camera file)"
    )
