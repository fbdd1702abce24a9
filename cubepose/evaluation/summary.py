"""What an evaluation's metrics say, in the order a reader needs them: the headline in words, a short
summary table, then every metric grouped with its unit.

Used by report.html (cubepose.evaluation.html_report) and by the training progress line
(cubepose.training.progress), so the headline reads the same in both. Shares (accuracies, recalls)
are in [0, 1] in metrics.json and shown here as percentages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cubepose.evaluation.bop_metrics import MSPD_REFERENCE_WIDTH
from cubepose.evaluation.metrics import ADD_THRESHOLD, POSE_ERROR_NAMES, STATISTICS

SUMMARY_STATISTICS = ("mean", "median", "p90")
ERROR_LABELS = {  # what each per-instance error measures and its unit
    "translation_error_cm": ("translation error", "cm"),
    "rotation_error_deg": ("rotation error", "deg"),
    "add_cm": ("ADD", "cm"),
    "adds_cm": ("ADD-S", "cm"),
}
# (metric prefix, what it measures, unit) of the errors pose_dataset_metrics summarises, in its order
ERROR_QUANTITIES = tuple((name, *ERROR_LABELS.get(name, (name, ""))) for name in POSE_ERROR_NAMES)
SHARE = "%"  # the unit shown for a share in [0, 1]
FIXED_UNITS = ("cm", "deg", "px")  # shown with 2 decimals: 0.01 cm, deg or px is finer than any pose needs


@dataclass(frozen=True)
class Metric:
    """One metrics.json entry as shown: its key, what it is, its unit and its value."""

    key: str
    label: str
    unit: str
    value: Any

    @property
    def text(self) -> str:
        """The value in its unit: shares as percentages, counts as integers, missing values as 'n/a'."""
        return format_value(self.value, self.unit)


def format_value(value: Any, unit: str) -> str:
    """``value`` as shown in ``unit``: a share as a percentage with one decimal, centimetres, degrees and pixels
    with two, other numbers with 3 significant digits (counts whole), None or NaN (no finite prediction) as
    'n/a'."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a" if value is None else str(value)
    if not math.isfinite(value):
        return "n/a"
    if unit == SHARE:
        return f"{100 * value:.1f} %"
    if unit == "" and float(value).is_integer():
        return f"{int(value)}"
    if unit in FIXED_UNITS:
        return f"{value:.2f} {unit}"
    return f"{value:.3g} {unit}".rstrip()


def _number(value: Any) -> float:
    """A metric as a float; NaN for None (a metric written as null) or anything not numeric."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _error_metric(key: str) -> Metric | None:
    """``<quantity>_<statistic>`` of ERROR_QUANTITIES as a Metric without its value, or None."""
    for prefix, label, unit in ERROR_QUANTITIES:
        for statistic in STATISTICS:
            if key == f"{prefix}_{statistic}":
                return Metric(key, f"{label}, {statistic}", unit, None)
    return None


BOP_RECALL = re.compile(r"(mssd|mspd)_recall_(\d+(?:\.\d+)?)")  # mssd_recall_0.05, mspd_recall_5


# The groups' rules: each names (label, unit) of the keys its group owns, None for the others.
def _unity(key: str) -> tuple[str, str] | None:
    return {"translation_mse": ("translation MSE", "m²"), "orientation_error": ("orientation error", "rad")}.get(key)


def _accuracy(key: str) -> tuple[str, str] | None:
    if key.startswith("accuracy_add_") or key.startswith("accuracy_adds_"):
        name = "ADD-S" if key.startswith("accuracy_adds_") else "ADD"
        return f"{name} within {ADD_THRESHOLD:.0%} of the object's diagonal", SHARE
    found = re.fullmatch(r"accuracy_(\d+)cm_(\d+)deg", key)
    return (f"within {found[1]} cm and {found[2]} deg", SHARE) if found else None


def _bop(key: str) -> tuple[str, str] | None:
    if key in ("ar_mssd", "ar_mspd"):
        return f"AR_{key[3:].upper()} (mean recall over the thresholds)", SHARE
    found = BOP_RECALL.fullmatch(key)
    if found is None:
        return None
    if found[1] == "mssd":
        return f"MSSD recall below {float(found[2]):g} of the diameter", SHARE
    return f"MSPD recall below {float(found[2]):g} px ({MSPD_REFERENCE_WIDTH:g} px wide)", SHARE


def _detection(key: str) -> tuple[str, str] | None:
    counts = {
        "instances": "true instances",
        "predictions": "poses found",
        "missed_instances": "missed instances",
        "spurious_predictions": "spurious poses",
        "withheld_predictions": "poses withheld as implausible",
        "non_finite_predictions": "predictions not finite",
    }
    if key in counts:
        return counts[key], ""
    found = re.fullmatch(r"(recall|precision|ap)_(5cm_5deg|add)", key)
    if found:
        criterion = "5 cm and 5 deg" if found[2] == "5cm_5deg" else f"ADD within {ADD_THRESHOLD:.0%} of the diagonal"
        return f"{'average precision' if found[1] == 'ap' else found[1]}, {criterion}", SHARE
    return None


def _confidence(key: str) -> tuple[str, str] | None:
    return {
        "confidence_mean": ("confidence (mean keypoint score)", ""),
        "reprojection_error_mean": ("reprojection error", "px"),
    }.get(key)


def _bop_order(key: str) -> tuple:
    """AR first, then MSSD recalls, then MSPD recalls, each by numeric threshold (not lexically)."""
    found = BOP_RECALL.fullmatch(key)
    if found is None:  # ar_mssd, ar_mspd
        return (0, key, 0.0)
    return (1 if found[1] == "mssd" else 2, found[1], float(found[2]))


def _error_order(key: str) -> tuple:
    for rank, (prefix, _, _) in enumerate(ERROR_QUANTITIES):
        if key.startswith(prefix + "_"):
            return (rank, STATISTICS.index(key[len(prefix) + 1 :]))
    return (len(ERROR_QUANTITIES), 0)


GROUP_RULES = (
    ("Unity's metrics", _unity),
    ("Accuracies", _accuracy),
    ("BOP recalls", _bop),
    ("Detection and counts", _detection),
    ("Confidence", _confidence),
)
GROUP_TITLES = ("Unity's metrics", "Errors", "Accuracies", "BOP recalls", "Detection and counts", "Confidence", "Other")


def grouped_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, list[Metric]]]:
    """Every metric under its group (Unity's, errors, accuracies, BOP recalls, detection and counts,
    confidence, then any other callback's), each group in a reading order; empty groups left out."""
    groups: dict[str, list[Metric]] = {title: [] for title in GROUP_TITLES}
    for key, value in metrics.items():
        error = _error_metric(key)
        if error is not None:
            groups["Errors"].append(Metric(key, error.label, error.unit, value))
            continue
        for title, rule in GROUP_RULES:
            named = rule(key)
            if named is not None:
                groups[title].append(Metric(key, *named, value))
                break
        else:
            groups["Other"].append(Metric(key, key, "", value))
    orders = {"Errors": _error_order, "BOP recalls": _bop_order}
    ordered = []
    for title in GROUP_TITLES:
        order = orders.get(title, str)
        if groups[title]:
            ordered.append((title, sorted(groups[title], key=lambda metric: order(metric.key))))
    return ordered


def summary_table(metrics: Mapping[str, Any]) -> list[tuple[str, list[Metric]]]:
    """The short table: per error quantity its mean, median and p90; then the accuracies, AR and counts
    a robot engineer decides on. Rows whose metrics the evaluation lacks are left out."""
    rows: list[tuple[str, list[Metric]]] = []
    for prefix, label, unit in ERROR_QUANTITIES[:3]:
        keys = [f"{prefix}_{statistic}" for statistic in SUMMARY_STATISTICS]
        if all(key in metrics for key in keys):
            rows.append((f"{label} ({unit})", [Metric(key, key, unit, metrics[key]) for key in keys]))
    for key in ("accuracy_5cm_5deg", "accuracy_add_10pct_diagonal", "ar_mssd", "ar_mspd"):
        if key in metrics:
            label, unit = (_accuracy(key) or _bop(key)) or (key, "")
            rows.append((label, [Metric(key, label, unit, metrics[key])]))
    for key, label, value in _counts(metrics):
        rows.append((label, [Metric(key, label, "", value)]))
    return rows


def _found(metrics: Mapping[str, Any]) -> int:
    """Poses given out of one-per-image instances: neither withheld nor non-finite."""
    withheld = _number(metrics.get("withheld_predictions", 0))
    return int(_number(metrics["instances"]) - withheld - _number(metrics.get("non_finite_predictions", 0)))


def _counts(metrics: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(key, label, value) of the count rows: instances, poses found (several instances per image: predictions,
    missed, spurious), withheld and not finite; ``found`` is derived, not a metrics.json key."""
    if "instances" not in metrics:
        return []
    named = [("instances", "instances")]
    if "missed_instances" in metrics:
        named += [("predictions", "poses found"), ("missed_instances", "missed"), ("spurious_predictions", "spurious")]
    named += [("withheld_predictions", "withheld"), ("non_finite_predictions", "not finite")]
    rows = [(key, label, metrics[key]) for key, label in named if key in metrics]
    if "missed_instances" not in metrics:
        rows.insert(1, ("found", "poses found", _found(metrics)))
    return rows


def headline(metrics: Mapping[str, Any]) -> str:
    """The evaluation in one sentence: instances and how many were found, mean errors, the share within
    5 cm and 5 deg, and what was withheld or not finite."""
    parts = []
    if "instances" in metrics:
        instances = int(_number(metrics["instances"]))
        if "missed_instances" in metrics:
            found = instances - int(_number(metrics["missed_instances"]))
            spurious = int(_number(metrics.get("spurious_predictions", 0)))
            parts.append(f"{found} of {instances} instances found ({spurious} spurious)")
        else:
            parts.append(f"{_found(metrics)} of {instances} poses given")
    parts.append(short_headline(metrics))
    counts = [
        f"{int(_number(metrics[key]))} {label}"
        for key, label in (
            ("withheld_predictions", "withheld as implausible"),
            ("non_finite_predictions", "not finite"),
        )
        if key in metrics and _number(metrics[key]) > 0
    ]
    return "; ".join(parts) + (f"; {', '.join(counts)}" if counts else "") + "."


def short_headline(metrics: Mapping[str, Any]) -> str:
    """Mean translation and rotation error and the share within 5 cm and 5 deg, e.g.
    'mean error 1.53 cm and 1.51 deg, 91.6 % within 5 cm and 5 deg' (the training progress line's)."""
    translation = format_value(metrics.get("translation_error_cm_mean"), "cm")
    rotation = format_value(metrics.get("rotation_error_deg_mean"), "deg")
    within = format_value(metrics.get("accuracy_5cm_5deg"), SHARE)
    return f"mean error {translation} and {rotation}, {within} within 5 cm and 5 deg"
