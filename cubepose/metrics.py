"""Pose metrics, vectorised over instances (numpy; no edflow dependency).

Unity's two dataset metrics are reproduced exactly, thresholds included, for comparison
with its pose-estimation model. The standard ones answer a robot engineer's questions:
how many centimetres and degrees off, the cube-corner distance ADD (ADD-S for a symmetric
cube), and the share of instances within the usual thresholds.
"""

from __future__ import annotations

import numpy as np

from cubepose.geometry import CUBE_SIZE, canonicalize_quaternions, cube_corners, transform_points, unity_euler_angles

ACCURACY_THRESHOLDS = ((0.02, 2.0), (0.05, 5.0))  # (metres, degrees)
ADD_THRESHOLD = 0.1  # share of the cube's diagonal

# Unity's orientation_average_quaternion_error: cos(angle) beyond these counts as 0 / pi/2.
UNITY_COS_HIGH = 0.999
UNITY_COS_LOW = -0.999


def translation_squared_error(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per instance: mean over x, y, z of the squared error (m^2), as Unity's metric."""
    return np.mean((np.asarray(predicted, np.float64) - np.asarray(true, np.float64)) ** 2, axis=-1)


def unity_quaternion_error(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per instance: Unity's angle arccos(2<q,p>^2 - 1) in radians, with its thresholds.

    cos <= -0.999 gives pi/2 (Unity's choice, kept on purpose) and cos >= 0.999 gives 0.
    Squaring the dot product makes it invariant to q vs -q.
    """
    dot = np.sum(np.asarray(predicted, np.float64) * np.asarray(true, np.float64), axis=-1)
    cos_angle = 2 * dot**2 - 1
    angle = np.arccos(np.clip(cos_angle, -1.0, 1.0))
    angle = np.where(cos_angle <= UNITY_COS_LOW, np.pi / 2, angle)
    return np.where(cos_angle >= UNITY_COS_HIGH, 0.0, angle)


def unity_dataset_metrics(
    translation_pred: np.ndarray,
    translation_true: np.ndarray,
    quaternion_pred: np.ndarray | None = None,
    quaternion_true: np.ndarray | None = None,
) -> dict[str, float]:
    """Unity's ``translation_mse`` and, when orientations are given, ``orientation_error`` (rad)."""
    metrics = {"translation_mse": float(np.mean(translation_squared_error(translation_pred, translation_true)))}
    if quaternion_pred is not None and quaternion_true is not None:
        metrics["orientation_error"] = float(np.mean(unity_quaternion_error(quaternion_pred, quaternion_true)))
    return metrics


def translation_error(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per instance: Euclidean distance between translations (m)."""
    return np.linalg.norm(np.asarray(predicted, np.float64) - np.asarray(true, np.float64), axis=-1)


def rotation_error(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per instance: geodesic angle 2 arccos |<q, p>| between unit quaternions (rad), the same for q and -q."""
    predicted, true = canonicalize_quaternions(predicted), canonicalize_quaternions(true)
    dot = np.abs(np.sum(predicted * true, axis=-1))
    return 2 * np.arccos(np.clip(dot, 0.0, 1.0))


def add_distance(
    translation_pred: np.ndarray,
    quaternion_pred: np.ndarray,
    translation_true: np.ndarray,
    quaternion_true: np.ndarray,
    size: float = CUBE_SIZE,
) -> np.ndarray:
    """Per instance: ADD, the mean distance between the 8 cube corners under the true and predicted pose (m)."""
    corners = cube_corners(size)
    true = transform_points(corners, translation_true, quaternion_true)
    predicted = transform_points(corners, translation_pred, quaternion_pred)
    return np.linalg.norm(true - predicted, axis=-1).mean(axis=-1)


def add_s_distance(
    translation_pred: np.ndarray,
    quaternion_pred: np.ndarray | None,
    translation_true: np.ndarray,
    quaternion_true: np.ndarray,
    size: float = CUBE_SIZE,
) -> np.ndarray:
    """Per instance: ADD-S, the mean distance from each true corner to the closest predicted corner (m).

    For a symmetric cube; without a predicted orientation (``network/symmetric: true`` predicts
    translation only) the true one is used, since the cube looks the same under its symmetries.
    """
    quaternion_pred = quaternion_true if quaternion_pred is None else quaternion_pred
    corners = cube_corners(size)
    true = transform_points(corners, translation_true, quaternion_true)
    predicted = transform_points(corners, translation_pred, quaternion_pred)
    distances = np.linalg.norm(true[..., :, None, :] - predicted[..., None, :, :], axis=-1)
    return distances.min(axis=-1).mean(axis=-1)


def instance_errors(
    translation_pred: np.ndarray,
    translation_true: np.ndarray,
    quaternion_pred: np.ndarray | None,
    quaternion_true: np.ndarray,
    symmetric: bool = False,
    size: float = CUBE_SIZE,
) -> dict[str, np.ndarray]:
    """Per instance, in report units: translation error (cm), rotation error (deg) and ADD (cm), or
    ADD-S (cm) for a symmetric cube, plus the true distance to the camera (m) and true yaw (deg)."""
    errors = {
        "translation_error_cm": 100 * translation_error(translation_pred, translation_true),
        "distance_m": np.linalg.norm(np.asarray(translation_true, np.float64), axis=-1),
        "true_yaw_deg": unity_euler_angles(quaternion_true)[..., 1],
    }
    if symmetric or quaternion_pred is None:
        add_s = add_s_distance(translation_pred, quaternion_pred, translation_true, quaternion_true, size)
        errors["add_s_cm"] = 100 * add_s
    else:
        errors["rotation_error_deg"] = np.degrees(rotation_error(quaternion_pred, quaternion_true))
        errors["add_cm"] = 100 * add_distance(
            translation_pred, quaternion_pred, translation_true, quaternion_true, size
        )
    return errors


def _summary(name: str, values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, np.float64)
    return {
        f"{name}_mean": float(values.mean()),
        f"{name}_median": float(np.median(values)),
        f"{name}_p90": float(np.percentile(values, 90)),
    }


def pose_dataset_metrics(
    translation_pred: np.ndarray,
    translation_true: np.ndarray,
    quaternion_pred: np.ndarray | None,
    quaternion_true: np.ndarray,
    symmetric: bool = False,
    size: float = CUBE_SIZE,
) -> dict[str, float]:
    """The standard metrics over a split: errors in cm and degrees, ADD or ADD-S in cm, accuracies in [0, 1]."""
    errors = instance_errors(translation_pred, translation_true, quaternion_pred, quaternion_true, symmetric, size)
    metrics: dict[str, float] = {}
    for name in ("translation_error_cm", "rotation_error_deg", "add_cm", "add_s_cm"):
        if name in errors:
            metrics.update(_summary(name, errors[name]))
    if "rotation_error_deg" in errors:
        for metres, degrees in ACCURACY_THRESHOLDS:
            within = (errors["translation_error_cm"] < 100 * metres) & (errors["rotation_error_deg"] < degrees)
            metrics[f"accuracy_{round(metres * 100)}cm_{round(degrees)}deg"] = float(within.mean())
    add_cm = errors.get("add_cm", errors.get("add_s_cm"))
    metrics["accuracy_add_10pct_diagonal"] = float((add_cm < 100 * ADD_THRESHOLD * size * np.sqrt(3)).mean())
    return metrics
