"""edflow dataset classes for the train, validation and test splits.

edflow builds each as ``Cls(config=config)``. An example is a dict with ``image`` (uint8 HWC RGB at
``network/image_size``: a quarter of float32's bytes through edflow's worker processes; the training step
scales it to [-1, 1] on its device), ``translation`` (3,) metres, ``quaternion`` (4,) x, y, z, w and ``camera``
(4,) fx, fy, cx, cy in pixels of the resized image (u = cx + fx x/z, v = cy - fy y/z). With
``data/max_instances`` M above 1 it adds every instance: ``translations`` (M, 3), ``quaternions``
(M, 4) (empty slots hold a harmless pose) and ``instance_count``; ``translation`` and ``quaternion``
are then the first slot's.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from edflow.data.dataset_mixin import DatasetMixin

from cubepose.config import validate_config
from cubepose.data.formats import read_dataset
from cubepose.data.image_cache import cached_images
from cubepose.data.images import decode_resized
from cubepose.data.pose_index import PoseIndex
from cubepose.data.sources import local_root
from cubepose.data.splits import fraction_split, sample_indices
from cubepose.errors import ConfigError, DatasetError
from cubepose.geometry.object import Box
from cubepose.geometry.projection import resize_intrinsics
from cubepose.geometry.symmetries import named_group, same_group
from cubepose.storage import default_cache_dir
from cubepose.training.distributed import launched_ranks, shard

logger = logging.getLogger(__name__)

SIZE_TOLERANCE = 0.01  # labelled edge lengths within 1 % of object/dimensions count as the same box


def read_root(data: dict, root: str) -> PoseIndex:
    """Fetch (zip, gs://, s3://) and index the dataset at ``root`` with the ``data`` config's reader options."""
    return read_dataset(
        local_root(root, data["cache_dir"]),
        fmt=data["format"],
        label_name=data["label_name"],
        instance_id=data["instance_id"],
        camera=data["camera"],
        max_instances=data["max_instances"],
        obj_id=data["obj_id"],
    )


def load_split(config: dict, split: str) -> PoseIndex:
    """Index ``data/<split>``, or a ``validation_fraction`` part of ``data/train``, then its ``sample_size``."""
    data = config["data"]
    fraction = data["validation_fraction"]
    if fraction is not None and split in ("train", "validation"):
        index = read_root(data, data["train"]["root"])
        index = index.subset(fraction_split(len(index), fraction, data["seed"])[split])
    else:
        index = read_root(data, data[split]["root"])
    chosen = sample_indices(len(index), data[split]["sample_size"], data["seed"], split)
    logger.info(
        "%s split: %d of %d usable %s captures from %s", split, len(chosen), len(index), index.format, index.root
    )
    if len(chosen) == 0:
        raise ConfigError(f"data/{split} is empty; lower data/validation_fraction or add captures")
    index = index.subset(chosen)
    ranks = launched_ranks()
    if split == "train" and ranks.distributed:  # under torchrun each rank trains on its own disjoint share
        index = index.subset(shard(len(index), ranks))
        logger.info(
            "rank %d of %d trains on %d of the split's %d examples", ranks.rank, ranks.world, len(index), len(chosen)
        )
    box = Box.from_config(config)
    check_object_size(index, box, split)
    check_object_symmetries(index, box, split)
    return index


def check_object_size(index: PoseIndex, box: Box, split: str) -> None:
    """Refuse labels that record a box of other edge lengths than ``object/dimensions`` (within 1 %):
    the ADD loss, the metrics and the crop window would measure another object. Unrecorded sizes pass."""
    sizes = index.object_sizes[index.present]
    recorded = sizes[np.isfinite(sizes).all(axis=1)]
    differs = ~np.isclose(recorded, box.dimensions, rtol=SIZE_TOLERANCE, atol=0).all(axis=1)
    if not differs.any():
        return
    sizes = np.unique(np.round(recorded[differs], 4), axis=0)
    shown = " or ".join(_listed(row) for row in sizes[:3]) + (" or others" if len(sizes) > 3 else "")
    if len(sizes) == 1:
        fix = f"set object/dimensions: {_listed(sizes[0])} (edflow: --object/dimensions {_listed(sizes[0], ',')})"
    else:
        fix = "a model learns one object: train on one object's data"
    raise DatasetError(
        f"data/{split}: {int(differs.sum())} of {len(index)} labels record a box of {shown} m, but "
        f"object/dimensions is {_listed(box.dimensions)}; {fix}"
    )


def check_object_symmetries(index: PoseIndex, box: Box, split: str) -> None:
    """Refuse a dataset that declares other symmetries (BOP's models_info.json) than ``object/symmetries``:
    the losses and metrics would count other poses as the same. Datasets that declare none pass."""
    declared = index.declared_symmetries
    if declared is None or same_group(declared, box.symmetries):
        return
    wanted = named_group(declared, box.dimensions)
    raise DatasetError(
        f"data/{split}: the dataset's models_info.json declares {len(declared)} symmetries (identity included) "
        f"but object/symmetries gives {len(box.symmetries)}; set object/symmetries: {json.dumps(wanted)}"
    )


def _listed(values: np.ndarray | tuple, separator: str = ", ") -> str:
    """Edge lengths as a YAML list: [0.2, 0.2, 0.2]."""
    return "[" + separator.join(f"{float(v):g}" for v in values) + "]"


class PoseDataset(DatasetMixin):
    """Images, cube poses and cameras of one split of a Unity Perception dataset."""

    split = ""

    def __init__(self, config: dict) -> None:
        validate_config(config)
        self.index = load_split(config, self.split)
        self.image_size = config["network"]["image_size"]
        size = (self.image_size, self.image_size)
        translations, quaternions = self.index.filled_poses()
        self.labels = {
            "translation": translations[:, 0],
            "quaternion": quaternions[:, 0],
            "camera": resize_intrinsics(self.index.cameras, self.index.image_sizes, size).astype(np.float32),
            "original_size": self.index.image_sizes,
            "original_camera": self.index.cameras,  # in pixels of the original image (BOP's MSPD)
            "image_path": self.index.image_paths,
        }
        self.several = config["data"]["max_instances"] > 1
        if self.several:  # every instance, padded to data/max_instances, and how many there are
            self.labels.update(translations=translations, quaternions=quaternions)
            self.labels["instance_count"] = self.index.instance_counts
        self.images = None
        if config["image_cache"]:
            cache_dir = Path(config["data"]["cache_dir"]).expanduser() if config["data"]["cache_dir"] else None
            self.images = cached_images(
                self.index.image_paths, self.image_size, cache_dir or default_cache_dir(), config["n_data_processes"]
            )

    def __len__(self) -> int:
        return len(self.index)

    def get_example(self, i: int) -> dict[str, np.ndarray]:
        path = self.index.image_paths[i]
        example = {
            "image": np.asarray(self.images[i]) if self.images is not None else decode_resized(path, self.image_size),
            "translation": self.labels["translation"][i],
            "quaternion": self.labels["quaternion"][i],
            "camera": self.labels["camera"][i],
        }
        if self.several:
            example.update({key: self.labels[key][i] for key in ("translations", "quaternions", "instance_count")})
        return example


class TrainDataset(PoseDataset):
    split = "train"


class ValidationDataset(PoseDataset):
    split = "validation"


class TestDataset(PoseDataset):
    split = "test"
