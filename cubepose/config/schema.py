"""The config schema: every key cubepose reads, its type and default (the one place defaults are written).

edflow merges ``-b`` files shallowly (a later file that sets ``network:`` replaces the whole tree), so
validation (cubepose.config.validation) fills keys missing from a tree with the defaults below, which are
the values written in configs/base.yaml (a test keeps the two equal). The object's default size is
the geometry's (cubepose.geometry.object).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from cubepose.geometry.object import DEFAULT_DIMENSIONS, DEFAULT_SYMMETRY

_ABSENT = object()


@dataclass(frozen=True)
class Option:
    """One config leaf: default, accepted type and constraints."""

    default: Any
    kind: type | None  # None: any value (edflow's own keys, passed through)
    nullable: bool = False
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False  # strictly above zero (a learning rate of 0 trains nothing)
    length: int | None = None  # for lists
    item_range: tuple[float, float] | None = None  # lists of numbers: each in [low, high)


def _opt(default: Any, kind: type | None, **kw: Any) -> Option:
    return Option(default, kind, **kw)


def _split(root: str) -> dict:
    return {"root": _opt(root, str), "sample_size": _opt(None, int, nullable=True, minimum=1)}


# Keys edflow itself reads or adds at run time; cubepose passes them through unchecked.
EDFLOW_KEYS = (
    "hook_freq",
    "test_mode",
    "nogpu",
    "eval_hook",
    "train_ops",
    "log_ops",
    "start_log_freq",
    "ckpt_zero",
    "val_freq",
    "eval_all",
    "eval_forever",
    "eval_functor",
    "debug",
    "n_prefetch",
    "error_on_timeout",
    "max_batches_per_epoch",
    "experiment_name",
    "dataset",
    "validation_dataset",
    "description",  # added to the saved config (meta.yaml) that edeval reads
)

SCHEMA: dict[str, Any] = {
    "model": _opt("cubepose.models.pose_network", str),
    "iterator": _opt("cubepose.engine.iterator.Iterator", str),
    "datasets": {
        "train": _opt("cubepose.data.TrainDataset", str),
        "validation": _opt("cubepose.data.ValidationDataset", str),
    },
    "code_root": _opt(None, str, nullable=True),
    # The object (cubepose.geometry.object.Box): edge lengths x, y, z in metres, each finite and > 0
    # (item_range's low end is inclusive, so a micrometre). Unity's UR3 demo cube is the default.
    "object": {
        "dimensions": _opt(list(DEFAULT_DIMENSIONS), list, length=3, item_range=(1e-6, math.inf)),
        # none, cube, box or a list of unit quaternions [x, y, z, w]: any YAML value here, checked by
        # cubepose.config.validation with the rules of cubepose.geometry.symmetries, which builds the group.
        "symmetries": _opt(DEFAULT_SYMMETRY, object),
    },
    "network": {
        "type": _opt("regression", str),  # a name in cubepose.models.networks.NETWORKS, checked there
        "backbone": _opt("vgg16", str),
        "head": _opt("unity_mlp", str),
        "rotation": _opt("quaternion", str),
        "image_size": _opt(224, int, minimum=32),
        "pretrained": _opt(None, str, nullable=True),
        "crop": {
            "active": _opt(False, bool),
            "locate_size": _opt(64, int, minimum=32),
            "size": _opt(48, int, minimum=32),
            "margin": _opt(1.3, float, minimum=0.5),
            "backbone": _opt("small_cnn", str),
        },
        "keypoints": {
            "stride": _opt(4, int, choices=(2, 4, 8)),
            "sigma": _opt(0.75, float, positive=True),  # the target Gaussians' width, in cells
            "offset_radius": _opt(1.5, float, positive=True),  # cells around a keypoint whose offsets are trained
            "assign_by_shape": _opt(False, bool),  # corners numbered by place, a head names the symmetry
            "min_score": _opt(0.3, float),  # several instances: a centre peak this high is one (lower: more)
        },
        "zoom": {  # network/type zoom: stage 1 locates on the downscaled input, stage 2 keypoints on a crop
            "locate_size": _opt(128, int, minimum=32),  # side of the downscaled input stage 1 sees
            "locate_stride": _opt(4, int, choices=(2, 4, 8)),  # input pixels per cell of stage 1's maps
            "crop_size": _opt(64, int, minimum=32),  # side of the crop stage 2 sees (network/keypoints/stride)
            "margin": _opt(1.5, float, minimum=0.5),  # crop half side = margin x the object's apparent radius
            "candidates": _opt(2, int, minimum=1),  # stage 1's strongest peaks cropped; stage 2 keeps the clearest
            "shift_jitter": _opt(0.2, float, minimum=0.0),  # training crops: centre moved up to this x half side
            "scale_jitter": _opt(0.2, float, minimum=0.0),  # training crops: size scaled by up to exp(+-this)
            "depth_tolerance": _opt(0.25, float, positive=True),  # withhold a pose whose depth differs more
            "max_reprojection_error": _opt(0.8, float, positive=True),  # crop pixels; withhold above
            "min_confidence": _opt(0.6, float, minimum=0.0),  # mean keypoint score; withhold below
        },
    },
    "data": {
        "format": _opt("auto", str, choices=("auto", "legacy", "solo", "bop")),
        "label_name": _opt(None, str, nullable=True),
        "obj_id": _opt(None, int, nullable=True),  # BOP: the object's obj_id (null: the only one)
        "instance_id": _opt(None, int, nullable=True),
        "max_instances": _opt(1, int, minimum=1),  # above 1: every instance (up to it), for a keypoint or zoom-in model
        "camera": {
            "vertical_fov": _opt(60.0, float, minimum=1.0),
            **{key: _opt(None, float, nullable=True, minimum=0.0) for key in ("fx", "fy", "cx", "cy")},
        },
        "cache_dir": _opt(None, str, nullable=True),
        "seed": _opt(0, int),
        "validation_fraction": _opt(None, float, nullable=True, minimum=0.0),
        "train": _split("data/cube/train"),
        "validation": _split("data/cube/validation"),
        "test": _split("data/cube/test"),
    },
    "batch_size": _opt(20, int, minimum=1),
    "test_batch_size": _opt(20, int, minimum=1),
    "num_epochs": _opt(120, int, minimum=1),
    "num_steps": _opt(_ABSENT, int, minimum=1),
    "accumulation_steps": _opt(10, int, minimum=1),
    "optimizer": {
        "type": _opt("adam", str, choices=("adam",)),
        "lr": _opt(1.0e-4, float, positive=True),
        "betas": _opt([0.9, 0.999], list, length=2, item_range=(0.0, 1.0)),
        "weight_decay": _opt(0.0, float, minimum=0.0),
        "clip_grad_norm": _opt(None, float, nullable=True, minimum=0.0),
        "schedule": _opt("constant", str, choices=("constant", "cosine")),
        "warmup_steps": _opt(0, int, minimum=0),
        "final_lr_factor": _opt(0.01, float, minimum=0.0),
    },
    "losses": _opt(
        {
            "translation": {"type": "mse", "weight": 1.0},
            "orientation": {"type": "mse", "weight": 1.0},
        },
        dict,
    ),
    "device": _opt("auto", str, choices=("auto", "cpu", "cuda")),
    "mixed_precision": _opt(False, bool),
    "channels_last": _opt(False, bool),
    "compile": _opt(False, bool),
    "seed": _opt(0, int),
    "log_freq": _opt(1000, int, minimum=1),
    "progress_freq": _opt(100, int, nullable=True, minimum=1),
    "ckpt_freq": _opt(None, int, nullable=True, minimum=1),
    "checkpoint": {
        "sha256": _opt(None, str, nullable=True),
        "upload": _opt(None, str, nullable=True),
        "upload_attempts": _opt(3, int, minimum=1),
    },
    # Photometric augmentation of training batches on their device (cubepose.training.augmentation): each image
    # draws its own changes from these ranges; labels and camera stay exact, evaluation is never augmented.
    "augmentation": {
        "active": _opt(False, bool),
        "probability": _opt(0.8, float, minimum=0.0, maximum=1.0),  # share of training images changed
        "brightness": _opt(0.3, float, minimum=0.0, maximum=1.0),  # overall gain 1 +- this
        "contrast": _opt(0.3, float, minimum=0.0, maximum=1.0),  # contrast about the image's mean, 1 +- this
        "saturation": _opt(0.3, float, minimum=0.0, maximum=1.0),  # colourfulness 1 +- this
        "white_balance": _opt(0.1, float, minimum=0.0, maximum=1.0),  # each channel's gain 1 +- this
        "blur": _opt(1.0, float, minimum=0.0, maximum=10.0),  # Gaussian sigma drawn in [0, this], input pixels
        "noise": _opt(6.0, float, minimum=0.0, maximum=255.0),  # noise std drawn in [0, this], grey levels
    },
    "n_data_processes": _opt(4, int, minimum=1),
    "image_cache": _opt(False, bool),
    "integrations": {
        "tensorboard": {
            "active": _opt(True, bool),
            "handlers": _opt(["scalars", "images", "figures"], list),
        },
        "wandb": _opt(_ABSENT, None),
        "git": _opt(_ABSENT, None),
    },
    "eval_pipeline": {
        "callbacks": _opt(
            {
                "unity_metrics": "cubepose.engine.callbacks.unity_metrics",
                "pose_metrics": "cubepose.engine.callbacks.pose_metrics",
                "report": "cubepose.engine.callbacks.report",
            },
            dict,
        ),
        "callback_kwargs": _opt({}, dict),
    },
    **{key: _opt(_ABSENT, None) for key in EDFLOW_KEYS},
}


# Keys cubepose no longer reads, with what replaces them: a config that still sets one is told the fix.
RETIRED_KEYS = {
    "network/symmetric": (
        "'object/symmetries: cube' (a plain cube now keeps its orientation, up to its 24 rotations); "
        "for an object without symmetries just delete the key"
    ),
}


def defaults() -> dict:
    """The complete default config (what configs/base.yaml spells out)."""

    def build(schema: dict) -> dict:
        out = {}
        for key, spec in schema.items():
            if isinstance(spec, dict):
                out[key] = build(spec)
            elif spec.default is not _ABSENT:
                out[key] = copy.deepcopy(spec.default)
        return out

    return build(SCHEMA)
