"""Pose metrics, vectorised over instances (numpy; no edflow dependency).

Unity's two dataset metrics are reproduced exactly, thresholds included, for comparison
with its pose-estimation model.
"""

from __future__ import annotations

import numpy as np

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
