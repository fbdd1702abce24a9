"""The BOP benchmark's pose errors and recalls: MSSD, MSPD and their average recalls (AR_MSSD, AR_MSPD).

As bop_toolkit defines them (pose_error.mssd / mspd, eval_bop19_pose.py), over the object model's vertices, here
the box's 8 corners (the PLY ``cubepose generate --format bop`` writes):

- MSSD = min over symmetries S of max over vertices x of |(R_e x + t_e) - (R_g S x + t_g)|, correct below
  0.05, 0.10, ..., 0.50 of the object's diameter;
- MSPD = the same in pixels of the image's projection, correct below 5, 10, ..., 50 px times width / 640;
- recall at a threshold = true instances matched by a correct estimate / true instances; AR = the mean over
  the thresholds. Several instances: per image and threshold, the estimates (at most as many as there are true
  instances, strongest first) are matched greedily to the unmatched true instance of least error below it.

VSD needs depth images, which cubepose does not render, so BOP's overall AR (the mean of the three) is not given.
"""

from __future__ import annotations

import numpy as np

from cubepose.geometry.object import Box
from cubepose.geometry.projection import pinhole_pixels, transform_points
from cubepose.geometry.symmetries import symmetric_equivalents

MSSD_THRESHOLDS = np.round(np.arange(1, 11) * 0.05, 2)  # shares of the object's diameter
MSPD_THRESHOLDS = np.arange(1, 11) * 5.0  # pixels at 640 px width
MSPD_REFERENCE_WIDTH = 640.0


def _corners(translation: np.ndarray, quaternion: np.ndarray, box: Box) -> np.ndarray:
    """The box's corners (..., 8, 3) in the camera frame for poses (..., 3) and (..., 4)."""
    return transform_points(box.corners(), np.asarray(translation, np.float64), np.asarray(quaternion, np.float64))


def pose_errors(
    translation_pred: np.ndarray,
    quaternion_pred: np.ndarray,
    translation_true: np.ndarray,
    quaternion_true: np.ndarray,
    intrinsics: np.ndarray,
    box: Box,
) -> dict[str, np.ndarray]:
    """``mssd`` (m) and ``mspd`` (pixels of the image with ``intrinsics`` (..., 4)) of each pose pair (...);
    NaN where a prediction is not finite."""
    estimated = _corners(translation_pred, quaternion_pred, box)  # (..., 8, 3)
    alike = symmetric_equivalents(quaternion_true, box.symmetries)  # (..., S, 4)
    truths = _corners(np.asarray(translation_true)[..., None, :], alike, box)  # (..., S, 8, 3)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        mssd = np.linalg.norm(estimated[..., None, :, :] - truths, axis=-1).max(axis=-1).min(axis=-1)
        camera = np.asarray(intrinsics, np.float64)
        u_e, v_e = pinhole_pixels(estimated, camera)  # (..., 8)
        u_t, v_t = pinhole_pixels(truths, camera[..., None, :])  # (..., S, 8)
        mspd = np.hypot(u_e[..., None, :] - u_t, v_e[..., None, :] - v_t).max(axis=-1).min(axis=-1)
    return {"mssd": mssd, "mspd": mspd}


def _thresholds(box: Box, width: np.ndarray) -> dict[str, np.ndarray]:
    """Per image (N,): each error's thresholds (N, 10) in its own unit (m, pixels)."""
    width = np.asarray(width, np.float64).reshape(-1, 1)
    return {
        "mssd": np.broadcast_to(MSSD_THRESHOLDS * box.diameter, (len(width), len(MSSD_THRESHOLDS))),
        "mspd": MSPD_THRESHOLDS * width / MSPD_REFERENCE_WIDTH,
    }


def _recall_metrics(correct: dict[str, np.ndarray], truths: int) -> dict[str, float]:
    """``mssd_recall_<share>``, ``mspd_recall_<px>`` and ``ar_mssd``, ``ar_mspd`` from (thresholds,) counts."""
    metrics = {}
    for name, labels in (
        ("mssd", [f"{t:.2f}" for t in MSSD_THRESHOLDS]),
        ("mspd", [f"{t:g}" for t in MSPD_THRESHOLDS]),
    ):
        recalls = correct[name] / truths if truths else np.zeros(len(labels))
        metrics.update({f"{name}_recall_{label}": float(r) for label, r in zip(labels, recalls, strict=True)})
        metrics[f"ar_{name}"] = float(recalls.mean())
    return metrics


def bop_recalls(errors: dict[str, np.ndarray], width: np.ndarray, box: Box) -> dict[str, float]:
    """Recalls and ARs of one estimate per true instance: ``errors`` (N,) (NaN fails), images ``width`` (N,)."""
    thresholds = _thresholds(box, width)
    with np.errstate(invalid="ignore"):
        correct = {name: (errors[name][:, None] < thresholds[name]).sum(axis=0) for name in ("mssd", "mspd")}
    return _recall_metrics(correct, len(width))


def bop_recalls_of_several(
    pair_errors: dict[str, np.ndarray],
    found: np.ndarray,
    confidence: np.ndarray,
    present: np.ndarray,
    width: np.ndarray,
    box: Box,
) -> dict[str, float]:
    """Recalls and ARs with BOP's matching: ``pair_errors`` (N, P, M) of every (estimate, true instance) pair,
    estimates ``found`` (N, P) with ``confidence``, true instances ``present`` (N, M), images ``width`` (N,).
    Batched over images; the loops run over the 10 thresholds and the P estimate slots."""
    found, present = np.asarray(found, bool), np.asarray(present, bool)
    images = np.arange(len(found))
    order = np.argsort(-np.where(found, np.asarray(confidence, np.float64), -np.inf), axis=1, kind="stable")
    kept = np.arange(found.shape[1]) < present.sum(axis=1, keepdims=True)  # top inst_count estimates (n_top)
    thresholds = _thresholds(box, width)
    correct = {}
    for name, errors in pair_errors.items():
        errors = np.where(present[:, None, :], np.nan_to_num(errors, nan=np.inf), np.inf)
        counts = []
        for column in range(thresholds[name].shape[1]):
            threshold = thresholds[name][:, column, None]  # (N, 1)
            matched = np.zeros(present.shape, bool)
            for rank in range(found.shape[1]):
                slot = order[:, rank]
                usable = found[images, slot] & kept[:, rank]
                costs = np.where(matched | (errors[images, slot] >= threshold), np.inf, errors[images, slot])
                best = costs.argmin(axis=1)
                hit = usable & np.isfinite(costs[images, best])
                matched[images[hit], best[hit]] = True
            counts.append(int(matched.sum()))
        correct[name] = np.array(counts, np.float64)
    return _recall_metrics(correct, int(present.sum()))
