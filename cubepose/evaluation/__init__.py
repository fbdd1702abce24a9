"""Evaluation of saved model outputs: pose metrics (Unity's, the field's, BOP's), matching of several
instances, the Evaluation that computes them once, its files, the HTML report and pose overlays.

Nothing here imports edflow or re-runs a model; edflow's callbacks are cubepose.engine.callbacks.
"""

from __future__ import annotations

import importlib

from cubepose.evaluation.evaluator import (
    ERRORS_FILE,
    METRICS_FILE,
    Evaluation,
    ImageGeometry,
    count_non_finite,
    image_geometry,
    latest_metrics_file,
    write_errors,
    write_metrics,
    write_results,
)

__all__ = [
    "ERRORS_FILE",
    "METRICS_FILE",
    "Evaluation",
    "ImageGeometry",
    "count_non_finite",
    "image_geometry",
    "latest_metrics_file",
    "write_errors",
    "write_metrics",
    "write_results",
]

# edflow callbacks once defined here: configs and old runs' meta.yaml name them as
# cubepose.evaluation.<name>; they resolve, on first use, to cubepose.engine.callbacks.
CALLBACKS_MOVED_TO = "cubepose.engine.callbacks"
MOVED_CALLBACKS = ("unity_metrics", "pose_metrics", "report", "evaluation_of")


def __getattr__(name: str):
    if name in MOVED_CALLBACKS:
        return getattr(importlib.import_module(CALLBACKS_MOVED_TO), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
