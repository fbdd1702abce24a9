"""An evaluation's outputs as edflow saved them (``eval/<ts>/<step>/model_outputs``), read back without the
model: what ``cubepose report`` rebuilds a report from."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from edflow.data.believers.meta import MetaDataset

from cubepose.errors import CubeposeError
from cubepose.evaluation.evaluator import Evaluation
from cubepose.evaluation.html_report import write_report
from cubepose.evaluation.outputs import EvalOutputs
from cubepose.geometry.object import Box


def report_from_folder(folder: str | Path) -> Path:
    """Rebuild the report of an eval folder (``.../eval/<ts>/<step>/``) from its saved outputs."""
    folder = Path(folder)
    outputs = folder / "model_outputs"
    if not outputs.is_dir():
        raise CubeposeError(f"no model_outputs in {folder}; give an eval folder logs/<run>/eval/<ts>/<step>/")
    dataset = MetaDataset(str(outputs))
    saved = EvalOutputs.from_labels(dataset.labels)
    config = dataset.meta or {}  # the evaluation's config, saved with its outputs
    network = config.get("network", {})
    if saved.image_size is None and "image_size" in network:  # outputs of older evaluations
        saved = saved.with_image_size(np.full(len(saved), network["image_size"]))
    image_paths = None
    errors_csv = folder / "errors.csv"
    if errors_csv.exists():
        with open(errors_csv, encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if rows and "image_index" in rows[0]:  # several instances: rows name their image
            paths = {int(row["image_index"]): row["image_path"] for row in rows}
            image_paths = [paths.get(i, "") for i in range(len(saved))]
        else:
            image_paths = [row["image_path"] for row in rows]
    return write_report(folder, Evaluation.of(saved, Box.from_config(config)), image_paths)
