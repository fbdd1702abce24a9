"""edflow dataset classes for the train, validation and test splits.

edflow builds each as ``Cls(config=config)``; an example is a dict with ``image``
(float32 HWC in [-1, 1]), ``translation`` (3,) metres and ``quaternion`` (4,) x, y, z, w.
"""

from __future__ import annotations

import logging

import numpy as np
from edflow.data.dataset_mixin import DatasetMixin

from cubepose.config import validate_config
from cubepose.data.images import load_image
from cubepose.data.legacy import read_legacy
from cubepose.data.pose_index import PoseIndex, sample_indices

logger = logging.getLogger(__name__)


def load_split(config: dict, split: str) -> PoseIndex:
    """Index the split named in ``data/<split>`` and apply its seeded ``sample_size``."""
    data = config["data"]
    split_config = data[split]
    index = read_legacy(split_config["root"], label_name=data["label_name"])
    chosen = sample_indices(len(index), split_config["sample_size"], data["seed"], split)
    logger.info("%s split: %d of %d usable captures from %s", split, len(chosen), len(index), index.root)
    return index.subset(chosen)


class PoseDataset(DatasetMixin):
    """Images and cube poses of one split of a Unity Perception dataset."""

    split = ""

    def __init__(self, config: dict) -> None:
        validate_config(config)
        self.index = load_split(config, self.split)
        self.image_size = config["network"]["image_size"]
        self.labels = {
            "translation": self.index.translations,
            "quaternion": self.index.quaternions,
            "image_path": self.index.image_paths,
        }

    def __len__(self) -> int:
        return len(self.index)

    def get_example(self, i: int) -> dict[str, np.ndarray]:
        return {
            "image": load_image(self.index.image_paths[i], self.image_size),
            "translation": self.index.translations[i],
            "quaternion": self.index.quaternions[i],
        }


class TrainDataset(PoseDataset):
    split = "train"


class ValidationDataset(PoseDataset):
    split = "validation"


class TestDataset(PoseDataset):
    split = "test"
