"""The Evaluation of a model's saved per-instance outputs: errors, Unity's, the field's and BOP's metrics,
and the files they are written to (metrics.json, errors.csv, bop_results.csv). Never re-runs the model."""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cubepose.errors import CubeposeError
from cubepose.evaluation.bop_metrics import bop_recalls, bop_recalls_of_several, pose_errors
from cubepose.evaluation.bop_results import image_ids, write_bop_results
from cubepose.evaluation.matching import detection_metrics, match_instances
from cubepose.evaluation.metrics import (
    CONFIDENCE_KEYS,
    POSE_ERROR_NAMES,
    finite_predictions,
    instance_errors,
    metrics_of_errors,
    unity_dataset_metrics,
)
from cubepose.evaluation.outputs import EvalOutputs
from cubepose.geometry.object import Box
from cubepose.geometry.rotations import unity_euler_angles
from cubepose.io.atomic import atomic_open, atomic_write_text

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
ERRORS_FILE = "errors.csv"


@dataclass(frozen=True)
class Evaluation:
    """What the callbacks report about one evaluation's outputs, computed once for all of them."""

    outputs: EvalOutputs
    errors: dict[str, np.ndarray]  # per instance (cubepose.evaluation.metrics.instance_errors)
    unity: dict[str, float]  # Unity's two metrics, the instance count and non_finite_predictions
    pose: dict[str, float]  # the standard metrics
    box: Box  # the object measured (ADD) and drawn (report galleries)

    @classmethod
    def of(
        cls,
        outputs: EvalOutputs | Mapping[str, np.ndarray],
        box: Box | None = None,
        images: ImageGeometry | None = None,
    ) -> Evaluation:
        """From an evaluation's outputs (the record, or its saved labels) of ``box`` (default ``Box()``), errors
        modulo its symmetries; with the images' cameras and widths (``image_geometry``), BOP's MSSD and MSPD
        recalls too. A model of several instances has its predictions matched to the true ones first."""
        box = box or Box()
        outputs = outputs if isinstance(outputs, EvalOutputs) else EvalOutputs.from_labels(outputs)
        images = images or image_geometry(outputs, None)
        if outputs.several:
            return cls.of_several(outputs, box, images)
        t_pred, q_pred, t_true, q_true = outputs.one_per_image()
        errors = instance_errors(t_pred, t_true, q_pred, q_true, box=box)
        if images is not None:
            bop = pose_errors(t_pred, q_pred, t_true, q_true, images.cameras, box)
            errors.update(mssd_cm=100 * bop["mssd"], mspd_px=bop["mspd"])
        for key, values in outputs.scores.items():  # a keypoint model's, kept beside each instance's errors
            errors[key] = values[:, 0].astype(np.float64)
        unity = unity_dataset_metrics(t_pred, t_true, q_pred, q_true, box.symmetries)
        unity["instances"] = int(len(t_pred))
        unity["non_finite_predictions"] = count_non_finite(t_pred, q_pred)
        finite, found = finite_predictions(t_pred, q_pred), outputs.found[:, 0]
        # a withheld pose (the model found it implausible) is a miss in every accuracy and out of every mean
        pose = metrics_of_errors(errors, finite & found, box)
        pose["non_finite_predictions"] = unity["non_finite_predictions"]
        pose["withheld_predictions"] = int(np.count_nonzero(finite & ~found))
        pose.update({f"{key}_mean": float(np.nanmean(errors[key])) for key in CONFIDENCE_KEYS if key in errors})
        if images is not None:
            pose.update(bop_recalls({"mssd": bop["mssd"], "mspd": bop["mspd"]}, images.widths, box))
        return cls(outputs, errors, unity, pose, box)

    @classmethod
    def of_several(cls, outputs: EvalOutputs, box: Box, images: ImageGeometry | None = None) -> Evaluation:
        """From a several-instance model's outputs: predictions matched to the true instances
        (cubepose.evaluation.matching), one error row per true instance (NaN where missed) and per spurious
        prediction, the standard metrics over the true instances (a missed one fails every accuracy), Unity's
        over the matched pairs, and the detection metrics (recall, precision, average precision)."""
        t_pred, q_pred, found = outputs.translations_pred, outputs.quaternions_pred, outputs.found
        t_true, q_true, present = outputs.translations_true, outputs.quaternions_true, outputs.present
        confidence = outputs.scores.get("confidence", found.astype(np.float64))
        matches = match_instances(t_pred, q_pred, found, confidence, t_true, q_true, present, box)
        truth = matches.truth_errors()
        spurious = found & (matches.prediction_truth < 0)
        truth_rows, spurious_rows = np.nonzero(present), np.nonzero(spurious)
        pair = matches.truth_slot[truth_rows]
        matched = pair >= 0
        nan = np.full(len(spurious_rows[0]), np.nan)
        errors = {
            "image_index": np.concatenate([truth_rows[0], spurious_rows[0]]),
            "instance": np.concatenate([truth_rows[1], spurious_rows[1]]),
            "kind": np.concatenate([np.where(matched, "matched", "missed"), np.full(len(nan), "spurious")]),
            **{name: np.concatenate([truth[name][truth_rows], nan]) for name in POSE_ERROR_NAMES},
            "distance_m": np.concatenate([np.linalg.norm(t_true[truth_rows], axis=-1), nan]),
            "true_yaw_deg": np.concatenate([unity_euler_angles(q_true[truth_rows])[:, 1], nan]),
        }
        for key, scores in outputs.scores.items():  # the matched prediction's, or the spurious one's
            values = np.where(matched, scores[truth_rows[0], np.maximum(pair, 0)], np.nan)
            errors[key] = np.concatenate([values, scores[spurious_rows]]).astype(np.float64)
        on_truth = {name: values[: len(pair)] for name, values in errors.items()}
        pose = metrics_of_errors(on_truth, matched, box)
        pose["non_finite_predictions"] = count_non_finite(t_pred[found], q_pred[found])
        pose.update(detection_metrics(matches, box))
        if images is not None:  # BOP's recalls, with BOP's own matching per threshold
            pairs = pose_errors(
                t_pred[:, :, None],
                q_pred[:, :, None],
                t_true[:, None],
                q_true[:, None],
                images.cameras[:, None, None],
                box,
            )
            pose.update(bop_recalls_of_several(pairs, found, confidence, present, images.widths, box))
        pose.update({f"{key}_mean": float(np.nanmean(errors[key])) for key in CONFIDENCE_KEYS if key in errors})
        rows, slots = truth_rows[0][matched], pair[matched]
        unity = unity_dataset_metrics(
            t_pred[rows, slots],
            t_true[truth_rows][matched],
            q_pred[rows, slots],
            q_true[truth_rows][matched],
            box.symmetries,
        )
        unity["instances"] = int(len(pair))
        unity["non_finite_predictions"] = pose["non_finite_predictions"]
        return cls(outputs, errors, unity, pose, box)


@dataclass(frozen=True)
class ImageGeometry:
    """The evaluated images' cameras (N, 4) fx, fy, cx, cy and widths (N,) in their own pixels (MSPD's)."""

    cameras: np.ndarray
    widths: np.ndarray


def image_geometry(outputs: EvalOutputs, data_in) -> ImageGeometry | None:
    """The original images' geometry from the dataset (``original_camera``, ``original_size``) when it covers
    the outputs, else the network input's (the outputs' ``camera`` and ``image_size``), else None."""
    dataset = getattr(data_in, "labels", None) or {}
    if "original_camera" in dataset and len(dataset["original_camera"]) == len(outputs):
        return ImageGeometry(
            np.asarray(dataset["original_camera"], np.float64), np.asarray(dataset["original_size"])[:, 0]
        )
    if outputs.camera is not None and outputs.image_size is not None:
        return ImageGeometry(np.asarray(outputs.camera, np.float64), np.asarray(outputs.image_size))
    return None


def count_non_finite(translation_pred: np.ndarray, quaternion_pred: np.ndarray) -> int:
    """How many predictions hold a NaN or inf; warns once when there are any, since the metrics skip them."""
    count = int(np.count_nonzero(~finite_predictions(translation_pred, quaternion_pred)))
    if count:
        logger.warning(
            "%d of %d predictions are not finite (NaN or inf): the error averages leave them out and the "
            "accuracies count them as failures (metrics.json: non_finite_predictions). A diverged model "
            "predicts NaN: retrain with a lower optimizer/lr.",
            count,
            len(translation_pred),
        )
    return count


def write_errors(root: Path, errors: dict[str, np.ndarray], image_paths: np.ndarray | None) -> Path:
    """errors.csv: one row per instance with its errors, distance to the camera and true yaw (several instances
    per image: ``image_index``, the instance's ``instance`` slot and ``kind``: matched, missed or spurious)."""
    count = len(errors["translation_error_cm"])
    images = errors.get("image_index", np.arange(count))
    columns = {
        "index": np.arange(count),
        "image_path": np.asarray(image_paths)[images] if image_paths is not None else np.full(count, ""),
        **errors,
    }
    path = root / ERRORS_FILE
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(zip(*(_formatted(v) for v in columns.values()), strict=True))
    return path


def write_results(root: Path, outputs: EvalOutputs, image_paths: np.ndarray | None, obj_id: int) -> Path:
    """bop_results.csv: every estimate found (one per image for a one-instance model) as BOP's results CSV."""
    found = outputs.found
    scores = outputs.scores.get("confidence", np.ones(found.shape))
    images = np.nonzero(found)[0]
    ids = image_ids(image_paths, len(outputs))
    translations, quaternions = outputs.translations_pred[found], outputs.quaternions_pred[found]
    return write_bop_results(root, translations, quaternions, scores[found], images, ids, obj_id)


def _formatted(values: np.ndarray) -> list:
    """CSV cells: floats with 6 significant digits (a non-finite prediction's errors read ``nan``)."""
    values = np.asarray(values)
    return [f"{v:.6g}" for v in values] if values.dtype.kind == "f" else values.tolist()


def write_metrics(root: Path, metrics: dict) -> Path:
    """Merge ``metrics`` into ``root``/metrics.json (atomic replace) and return its path.

    A metric that is not finite (an error mean when no prediction was finite) is written as null:
    NaN is not JSON, and other tools would refuse the file.
    """
    path = root / METRICS_FILE
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing.update(metrics)
    existing = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in existing.items()}
    atomic_write_text(path, json.dumps(existing, indent=2, sort_keys=True, allow_nan=False) + "\n")
    logger.info("metrics written to %s: %s", path, metrics)
    return path


def latest_metrics_file(path: Path) -> Path:
    """The newest metrics.json at or below ``path`` (a run folder, an eval folder or the file)."""
    if path.is_file():
        return path
    candidates = sorted(path.rglob("metrics.json"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise CubeposeError(f"no metrics.json under {path}; evaluate first: edflow -b <configs> -p <run>")
    return candidates[-1]
