"""edflow eval callbacks: dataset metrics from the saved per-instance outputs.

A callback is called as ``cb(root, data_in, data_out, config)`` after an evaluation
epoch, and by ``edeval`` over saved outputs; it never re-runs the model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from cubepose.io_utils import atomic_write_text
from cubepose.metrics import unity_dataset_metrics

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def _step_of(root: Path) -> int:
    """edflow names the eval folder of each checkpoint after its global step."""
    return int(root.name) if root.name.isdigit() else 0


def unity_metrics(root: str, data_in, data_out, config: dict, **kwargs) -> dict:
    """Unity's translation MSE and average quaternion error -> metrics.json and TensorBoard."""
    labels = data_out.labels
    metrics = unity_dataset_metrics(
        np.asarray(labels["translation_pred"]),
        np.asarray(labels["translation_true"]),
        np.asarray(labels["quaternion_pred"]) if "quaternion_pred" in labels else None,
        np.asarray(labels["quaternion_true"]),
    )
    metrics["instances"] = int(len(labels["translation_pred"]))
    write_metrics(Path(root), metrics)
    if config.get("test_mode", False):
        # In training runs edflow logs the returned scalars itself; in evaluation it does not.
        log_to_tensorboard(Path(root), metrics)
    return {"scalars": {k: v for k, v in metrics.items() if k != "instances"}}


def write_metrics(root: Path, metrics: dict) -> Path:
    """Merge ``metrics`` into ``root``/metrics.json (atomic replace) and return its path."""
    path = root / METRICS_FILE
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing.update(metrics)
    atomic_write_text(path, json.dumps(existing, indent=2, sort_keys=True) + "\n")
    logger.info("metrics written to %s: %s", path, metrics)
    return path


def log_to_tensorboard(root: Path, metrics: dict) -> None:
    """Write the scalars as TensorBoard events into the eval folder."""
    from tensorboardX import SummaryWriter

    with SummaryWriter(str(root)) as writer:
        for name, value in metrics.items():
            writer.add_scalar(f"eval/{name}", value, global_step=_step_of(root))
