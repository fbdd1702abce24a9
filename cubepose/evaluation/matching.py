"""Several instances per image: predictions matched to the true instances, and detection metrics over them.

Per image, the predictions found are taken in order of confidence, each pairing with the nearest unpaired true
instance by ADD (modulo the object's symmetries) when that is within one object diameter (greedy matching, as
detection benchmarks do). A pair is a true positive under a criterion (5 cm 5 deg, ADD below 10% of the
diameter) when its errors meet it; recall and precision count those pairs over the true instances and over the
predictions found, and average precision integrates precision over recall as the confidence threshold falls.
Batched over images; the only loop runs over the P prediction slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cubepose.evaluation.metrics import ADD_THRESHOLD, POSE_ERROR_NAMES, instance_errors
from cubepose.geometry.object import Box

UNMATCHED = -1


@dataclass(frozen=True)
class Matches:
    """Which prediction slot each true instance got (``truth_slot`` (N, M), -1: missed) and which true instance
    each prediction slot got (``prediction_truth`` (N, P), -1: spurious or not found), with the errors of every
    (slot, instance) pair, ``pair_errors`` name -> (N, P, M)."""

    truth_slot: np.ndarray
    prediction_truth: np.ndarray
    pair_errors: dict[str, np.ndarray]
    found: np.ndarray  # (N, P) bool
    present: np.ndarray  # (N, M) bool
    confidence: np.ndarray  # (N, P)

    def truth_errors(self) -> dict[str, np.ndarray]:
        """Per true instance (N, M): the errors of the prediction it was matched with (NaN where missed)."""
        slot = np.maximum(self.truth_slot, 0)[:, None, :]  # (N, 1, M)
        matched = self.truth_slot >= 0
        return {
            name: np.where(matched, np.take_along_axis(values, slot, axis=1)[:, 0], np.nan)
            for name, values in self.pair_errors.items()
        }

    def prediction_errors(self) -> dict[str, np.ndarray]:
        """Per prediction slot (N, P): the errors against the true instance it was matched with (NaN otherwise)."""
        truth = np.maximum(self.prediction_truth, 0)[:, :, None]  # (N, P, 1)
        matched = self.prediction_truth >= 0
        return {
            name: np.where(matched, np.take_along_axis(values, truth, axis=2)[..., 0], np.nan)
            for name, values in self.pair_errors.items()
        }


def match_instances(
    translation_pred: np.ndarray,
    quaternion_pred: np.ndarray,
    found: np.ndarray,
    confidence: np.ndarray,
    translation_true: np.ndarray,
    quaternion_true: np.ndarray,
    present: np.ndarray,
    box: Box | None = None,
) -> Matches:
    """Greedy matching per image of the predictions found (N, P) to the true instances present (N, M), strongest
    ``confidence`` first, by ADD within one object diameter; predictions (N, P, 3) and (N, P, 4), truths
    (N, M, 3) and (N, M, 4)."""
    box = box or Box()
    found, present = np.asarray(found, bool), np.asarray(present, bool)
    t_true = np.where(present[..., None], translation_true, [0.0, 0.0, 1.0])  # empty slots: a harmless pose
    q_true = np.where(present[..., None], quaternion_true, [0.0, 0.0, 0.0, 1.0])
    errors = instance_errors(
        np.asarray(translation_pred, np.float64)[:, :, None],
        t_true[:, None],
        np.asarray(quaternion_pred, np.float64)[:, :, None],
        q_true[:, None],
        box,
    )
    pair_errors = {name: errors[name] for name in POSE_ERROR_NAMES}  # (N, P, M)
    gate = np.where(present[:, None, :] & found[..., None], pair_errors["add_cm"], np.inf)
    gate = np.where(np.isfinite(gate) & (gate <= 100 * box.diameter), gate, np.inf)
    images = np.arange(len(found))
    truth_slot = np.full(present.shape, UNMATCHED)
    prediction_truth = np.full(found.shape, UNMATCHED)
    order = np.argsort(-np.where(found, np.asarray(confidence, np.float64), -np.inf), axis=1, kind="stable")
    for rank in range(found.shape[1]):  # the P slots, every image at once
        slot = order[:, rank]
        costs = np.where(truth_slot >= 0, np.inf, gate[images, slot])  # (N, M): unpaired instances only
        nearest = costs.argmin(axis=1)
        paired = np.isfinite(costs[images, nearest])
        truth_slot[images[paired], nearest[paired]] = slot[paired]
        prediction_truth[images[paired], slot[paired]] = nearest[paired]
    return Matches(truth_slot, prediction_truth, pair_errors, found, present, np.asarray(confidence, np.float64))


def correct_pairs(errors: dict[str, np.ndarray], box: Box) -> dict[str, np.ndarray]:
    """Per matched pair (any shape, NaN where unmatched): whether it meets each criterion, by name."""
    with np.errstate(invalid="ignore"):
        return {
            "5cm_5deg": (errors["translation_error_cm"] < 5) & (errors["rotation_error_deg"] < 5),
            "add": errors["add_cm"] < 100 * ADD_THRESHOLD * box.diameter,
        }


def detection_metrics(matches: Matches, box: Box | None = None) -> dict[str, float]:
    """Counts of true instances, predictions found, missed and spurious instances, and per criterion the recall,
    precision and average precision (``recall_5cm_5deg``, ``precision_add``, ``ap_5cm_5deg``, ...)."""
    box = box or Box()
    truths, predictions = int(matches.present.sum()), int(matches.found.sum())
    matched = matches.prediction_truth >= 0
    metrics: dict[str, float] = {
        "instances": truths,
        "predictions": predictions,
        "missed_instances": int((matches.present & (matches.truth_slot < 0)).sum()),
        "spurious_predictions": int((matches.found & ~matched).sum()),
    }
    confidence = matches.confidence[matches.found]
    for name, correct in correct_pairs(matches.prediction_errors(), box).items():
        hits = correct & matched & matches.found
        metrics[f"recall_{name}"] = float(hits.sum() / truths) if truths else float("nan")
        metrics[f"precision_{name}"] = float(hits.sum() / predictions) if predictions else float("nan")
        metrics[f"ap_{name}"] = average_precision(confidence, hits[matches.found], truths)
    return metrics


def average_precision(confidence: np.ndarray, hits: np.ndarray, truths: int) -> float:
    """Area under the precision-recall curve of predictions ranked by ``confidence`` (``hits``: which are true
    positives), precision made monotone from the right (the all-point interpolation of PASCAL VOC 2010+);
    NaN without true instances."""
    if truths == 0:
        return float("nan")
    order = np.argsort(-np.asarray(confidence, np.float64), kind="stable")
    true_positives = np.cumsum(np.asarray(hits, bool)[order])
    recall = np.concatenate([[0.0], true_positives / truths])
    precision = np.concatenate([[1.0], true_positives / np.arange(1, len(order) + 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * precision[1:]))
