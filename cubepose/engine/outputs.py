"""An evaluation's outputs as edflow saved them (``eval/<ts>/<step>/model_outputs``), read back without the
model: what ``cubepose report`` rebuilds a report from."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np
from edflow.data.believers.meta import MetaDataset

from cubepose.config import defaults
from cubepose.data.datasets import read_root
from cubepose.errors import CubeposeError
from cubepose.evaluation.evaluator import Evaluation
from cubepose.evaluation.html_report import write_report
from cubepose.evaluation.outputs import EvalOutputs
from cubepose.geometry.object import Box
from cubepose.storage.backends import is_remote

logger = logging.getLogger(__name__)


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
        image_paths = drawable(image_paths, config)
    return write_report(folder, Evaluation.of(saved, Box.from_config(config)), image_paths)


def drawable(image_paths: list[str], config: dict) -> list[str]:
    """``image_paths`` with every image that no dataset of the saved ``config`` indexes blanked (not drawn): the
    local datasets are indexed again here, so an edited errors.csv (or config) cannot put another file of the
    machine into report.html. Remote datasets are not fetched for a report; their images are not drawn."""
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    roots = {split.get("root") for split in data.values() if isinstance(split, dict)}
    indexed: set[str] = set()
    for root in sorted(root for root in roots if isinstance(root, str) and not is_remote(root)):
        try:
            indexed.update(read_root({**defaults()["data"], **data}, root).image_paths)
        except (CubeposeError, OSError, TypeError, ValueError) as err:
            logger.warning("report: the dataset %s is not readable here (%s); its images are not drawn", root, err)
    kept = [path if path and os.path.realpath(path) in indexed else "" for path in image_paths]
    if any(path and not drawn for path, drawn in zip(image_paths, kept, strict=True)):
        logger.warning("report: images that no dataset of the evaluation's config holds are not drawn")
    return kept
