"""Pose metrics, vectorised over instances (numpy; no edflow dependency).

Unity's two dataset metrics are reproduced exactly, thresholds included, for comparison
with its pose-estimation model. The standard ones answer a robot engineer's questions:
how many centimetres and degrees off, the cube-corner distances ADD and ADD-S, and the share of instances
within the usual thresholds. Corner distances and the ADD threshold are measured on ``box``, the
configured object (``Box.from_config``; default ``Box()``). For a symmetric object
(``object/symmetries``) every orientation error is taken modulo its symmetries: against the
symmetric equivalent of the true pose closest to the prediction (ADD: the minimum over them).

Non-finite predictions: a diverged model or a broken input can predict NaN or inf. Such an
instance (any predicted translation or quaternion component not finite) is counted as
``non_finite_predictions``, gets NaN per-instance errors, is left out of every mean, median and
percentile, and counts as a failure in every accuracy (whose denominator stays all instances):
a pose that cannot be drawn is not within 5 cm and 5 degrees.
"""

from __future__ import annotations

import numpy as np

from cubepose.geometry.object import Box
from cubepose.geometry.projection import transform_points
from cubepose.geometry.rotations import canonicalize_quaternions, unity_euler_angles
from cubepose.geometry.symmetries import is_identity_only, symmetric_equivalents

ACCURACY_THRESHOLDS = ((0.02, 2.0), (0.05, 5.0))  # (metres, degrees)
ADD_THRESHOLD = 0.1  # share of the object's diagonal (Box.diameter)
POSE_ERROR_NAMES = ("translation_error_cm", "rotation_error_deg", "add_cm", "adds_cm")  # per instance, summarised
STATISTICS = ("mean", "median", "p90", "p99", "max")  # each error's summary: <name>_<statistic> in metrics.json

# Unity's orientation_average_quaternion_error: cos(angle) beyond these counts as 0 / pi/2.
UNITY_COS_HIGH = 0.999
UNITY_COS_LOW = -0.999
CONFIDENCE_KEYS = ("confidence", "reprojection_error")  # a keypoint model's per-instance trust in its pose


def translation_squared_error(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per instance: mean over x, y, z of the squared error (m^2), as Unity's metric."""
    return np.mean((np.asarray(predicted, np.float64) - np.asarray(true, np.float64)) ** 2, axis=-1)


def closest_alignment(predicted: np.ndarray, true: np.ndarray, symmetries: np.ndarray | None = None) -> np.ndarray:
    """Per instance: |<p, q s_k>| for the symmetry s_k (of ``symmetries`` (K, 4); None: none) that brings the
    true quaternion q closest to the predicted p; the cosine of half the rotation error modulo the symmetries."""
    predicted, true = np.asarray(predicted, np.float64), np.asarray(true, np.float64)
    if is_identity_only(symmetries):
        return np.abs(np.sum(predicted * true, axis=-1))
    equivalents = symmetric_equivalents(true, symmetries)  # (..., K, 4)
    return np.abs(np.sum(predicted[..., None, :] * equivalents, axis=-1)).max(axis=-1)


def unity_quaternion_error(predicted: np.ndarray, true: np.ndarray, symmetries: np.ndarray | None = None) -> np.ndarray:
    """Per instance: Unity's angle arccos(2<q,p>^2 - 1) in radians, with its thresholds, modulo ``symmetries``.

    cos <= -0.999 gives pi/2 (Unity's choice, kept on purpose) and cos >= 0.999 gives 0.
    Squaring the dot product makes it invariant to q vs -q.
    """
    dot = closest_alignment(predicted, true, symmetries)
    cos_angle = 2 * dot**2 - 1
    angle = np.arccos(np.clip(cos_angle, -1.0, 1.0))
    angle = np.where(cos_angle <= UNITY_COS_LOW, np.pi / 2, angle)
    return np.where(cos_angle >= UNITY_COS_HIGH, 0.0, angle)


def finite_predictions(translation_pred: np.ndarray, quaternion_pred: np.ndarray | None = None) -> np.ndarray:
    """Per instance: True where every predicted translation (and quaternion) component is finite."""
    finite = np.isfinite(np.asarray(translation_pred, np.float64)).all(axis=-1)
    if quaternion_pred is not None:
        finite &= np.isfinite(np.asarray(quaternion_pred, np.float64)).all(axis=-1)
    return finite


def _finite_stand_ins(predicted: np.ndarray, true: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """``predicted`` with non-finite instances replaced by the true values, so that error formulas
    run without NaN warnings; the caller masks those instances' errors to NaN afterwards."""
    return np.where(finite[..., None], np.asarray(predicted, np.float64), np.asarray(true, np.float64))


def _finite_mean(values: np.ndarray, finite: np.ndarray) -> float:
    """Mean over the finite instances; NaN when there are none (an empty mean, without numpy's warning)."""
    return float(np.mean(values[finite])) if finite.any() else float("nan")


def unity_dataset_metrics(
    translation_pred: np.ndarray,
    translation_true: np.ndarray,
    quaternion_pred: np.ndarray | None = None,
    quaternion_true: np.ndarray | None = None,
    symmetries: np.ndarray | None = None,
) -> dict[str, float]:
    """Unity's ``translation_mse`` and, when orientations are given, ``orientation_error`` (rad, modulo
    the object's ``symmetries``, e.g. ``Box.symmetries``).

    Both are means over the instances with a finite prediction (see the module docstring), so one
    NaN prediction does not turn the dataset's metric into NaN; NaN only when none is finite.
    """
    with_orientation = quaternion_pred is not None and quaternion_true is not None
    finite = np.atleast_1d(finite_predictions(translation_pred, quaternion_pred if with_orientation else None))
    translation = _finite_stand_ins(translation_pred, translation_true, finite)
    metrics = {"translation_mse": _finite_mean(translation_squared_error(translation, translation_true), finite)}
    if with_orientation:
        quaternion = _finite_stand_ins(quaternion_pred, quaternion_true, finite)
        errors = unity_quaternion_error(quaternion, quaternion_true, symmetries)
        metrics["orientation_error"] = _finite_mean(errors, finite)
    return metrics


def translation_error(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per instance: Euclidean distance between translations (m)."""
    return np.linalg.norm(np.asarray(predicted, np.float64) - np.asarray(true, np.float64), axis=-1)


def rotation_error(predicted: np.ndarray, true: np.ndarray, symmetries: np.ndarray | None = None) -> np.ndarray:
    """Per instance: geodesic angle 2 arccos |<q, p>| between unit quaternions (rad), the same for q and -q;
    with ``symmetries`` (K, 4), the smallest angle to a symmetric equivalent of the true rotation."""
    predicted, true = canonicalize_quaternions(predicted), canonicalize_quaternions(true)
    dot = closest_alignment(predicted, true, symmetries)
    return 2 * np.arccos(np.clip(dot, 0.0, 1.0))


def add_distance(
    translation_pred: np.ndarray,
    quaternion_pred: np.ndarray,
    translation_true: np.ndarray,
    quaternion_true: np.ndarray,
    box: Box | None = None,
) -> np.ndarray:
    """Per instance: ADD, the mean distance between the 8 corners of ``box`` under the true and predicted pose (m).

    For a symmetric ``box`` the smallest over its symmetric equivalents of the true pose: exact for
    discrete symmetries, where ADD-S (closest corners) may pair two true corners with one predicted.
    """
    box = box or Box()
    corners = box.corners()
    predicted = transform_points(corners, translation_pred, quaternion_pred)
    if is_identity_only(box.symmetries):
        true = transform_points(corners, translation_true, quaternion_true)
        return np.linalg.norm(true - predicted, axis=-1).mean(axis=-1)
    equivalents = symmetric_equivalents(quaternion_true, box.symmetries)  # (..., K, 4)
    true = transform_points(corners, np.asarray(translation_true)[..., None, :], equivalents)  # (..., K, 8, 3)
    return np.linalg.norm(true - predicted[..., None, :, :], axis=-1).mean(axis=-1).min(axis=-1)


def adds_distance(
    translation_pred: np.ndarray,
    quaternion_pred: np.ndarray,
    translation_true: np.ndarray,
    quaternion_true: np.ndarray,
    box: Box | None = None,
) -> np.ndarray:
    """Per instance: ADD-S (bop_toolkit's ``adi``), the mean over the true pose's corners of ``box`` of the
    distance to the closest predicted corner (m). LINEMOD and YCB results of symmetric objects are given in it
    (as "ADD(-S)"); it ignores which corner is which, so it needs no symmetry group."""
    corners = (box or Box()).corners()
    predicted = transform_points(corners, translation_pred, quaternion_pred)  # (..., 8, 3)
    true = transform_points(corners, translation_true, quaternion_true)
    distances = np.linalg.norm(true[..., :, None, :] - predicted[..., None, :, :], axis=-1)  # (..., 8, 8)
    return distances.min(axis=-1).mean(axis=-1)


def instance_errors(
    translation_pred: np.ndarray,
    translation_true: np.ndarray,
    quaternion_pred: np.ndarray,
    quaternion_true: np.ndarray,
    box: Box | None = None,
) -> dict[str, np.ndarray]:
    """Per instance, in report units: translation error (cm), rotation error (deg) and ADD (cm), both
    modulo the symmetries of ``box``, ADD-S (cm), plus the true distance to the camera (m) and true yaw (deg).

    The errors of an instance whose prediction is not finite are NaN (its row is kept, so that
    errors.csv still lists every instance); distance and yaw come from the labels and stay.
    """
    box = box or Box()
    finite = finite_predictions(translation_pred, quaternion_pred)
    translation_pred = _finite_stand_ins(translation_pred, translation_true, finite)
    quaternion_pred = _finite_stand_ins(quaternion_pred, quaternion_true, finite)
    errors = {
        "translation_error_cm": 100 * translation_error(translation_pred, translation_true),
        "rotation_error_deg": np.degrees(rotation_error(quaternion_pred, quaternion_true, box.symmetries)),
        "add_cm": 100 * add_distance(translation_pred, quaternion_pred, translation_true, quaternion_true, box),
        "adds_cm": 100 * adds_distance(translation_pred, quaternion_pred, translation_true, quaternion_true, box),
    }
    errors = {name: np.where(finite, values, np.nan) for name, values in errors.items()}
    errors["distance_m"] = np.linalg.norm(np.asarray(translation_true, np.float64), axis=-1)
    errors["true_yaw_deg"] = unity_euler_angles(quaternion_true)[..., 1]
    return errors


def _summary(name: str, values: np.ndarray) -> dict[str, float]:
    """Mean, median, 90th and 99th percentile and maximum of ``values`` (already the finite ones; the last two
    show the worst cases a robot would act on); NaN when empty."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {f"{name}_{stat}": float("nan") for stat in STATISTICS}
    summary = (values.mean(), np.median(values), np.percentile(values, 90), np.percentile(values, 99), values.max())
    return {f"{name}_{stat}": float(value) for stat, value in zip(STATISTICS, summary, strict=True)}


def _within(values: np.ndarray, threshold: float, finite: np.ndarray) -> np.ndarray:
    """Per instance: finite and below ``threshold`` (a non-finite prediction is a failure)."""
    return finite & (np.where(finite, values, np.inf) < threshold)


def pose_dataset_metrics(
    translation_pred: np.ndarray,
    translation_true: np.ndarray,
    quaternion_pred: np.ndarray,
    quaternion_true: np.ndarray,
    box: Box | None = None,
) -> dict[str, float]:
    """The standard metrics over a split: errors in cm and degrees and ADD in cm (modulo the symmetries of
    ``box``), accuracies in [0, 1], and ``non_finite_predictions``, the number of instances whose prediction
    is NaN or inf.

    Error summaries are over the finite predictions; accuracies are shares of all instances, a
    non-finite prediction counting as outside every threshold.
    """
    errors = instance_errors(translation_pred, translation_true, quaternion_pred, quaternion_true, box)
    return metrics_of_errors(errors, finite_predictions(translation_pred, quaternion_pred), box)


def metrics_of_errors(errors: dict[str, np.ndarray], finite: np.ndarray, box: Box | None = None) -> dict[str, float]:
    """``pose_dataset_metrics`` from already computed ``instance_errors`` (of the same ``box``) and the
    finite-prediction mask."""
    metrics: dict[str, float] = {}
    for name in POSE_ERROR_NAMES:
        metrics.update(_summary(name, errors[name][finite]))
    for metres, degrees in ACCURACY_THRESHOLDS:
        within = _within(errors["translation_error_cm"], 100 * metres, finite)
        within &= _within(errors["rotation_error_deg"], degrees, finite)
        metrics[f"accuracy_{round(metres * 100)}cm_{round(degrees)}deg"] = float(within.mean())
    add_threshold_cm = 100 * ADD_THRESHOLD * (box or Box()).diameter
    metrics["accuracy_add_10pct_diagonal"] = float(_within(errors["add_cm"], add_threshold_cm, finite).mean())
    metrics["accuracy_adds_10pct_diagonal"] = float(_within(errors["adds_cm"], add_threshold_cm, finite).mean())
    metrics["non_finite_predictions"] = int(np.count_nonzero(~finite))
    return metrics
