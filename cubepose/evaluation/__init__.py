"""Evaluation of saved model outputs: the outputs' record, pose metrics (Unity's, the field's, BOP's), matching
of several instances, the Evaluation that computes them once, its files, the metrics in words, the HTML report
and pose overlays.
Nothing here imports edflow or re-runs a model; edflow's callbacks are cubepose.engine.callbacks."""

import importlib

# The callbacks once defined here: configs and older runs' meta.yaml name them cubepose.evaluation.<name>.
MOVED_CALLBACKS = {name: "cubepose.engine.callbacks" for name in ("unity_metrics", "pose_metrics", "report")}


def __getattr__(name: str):
    """A moved callback, imported from its new home on first use."""
    if name in MOVED_CALLBACKS:
        return getattr(importlib.import_module(MOVED_CALLBACKS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
