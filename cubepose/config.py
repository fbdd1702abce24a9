"""The config schema: every key cubepose reads, its type and default, and validation.

edflow merges ``-b`` files shallowly (a later file that sets ``network:`` replaces the
whole tree), so validation fills keys missing from a tree with the defaults below,
which are the values written in configs/base.yaml (a test keeps the two equal).
Unknown or mistyped keys fail at start with one message naming every problem.
"""

from __future__ import annotations

import copy
import difflib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cubepose.errors import ConfigError

logger = logging.getLogger(__name__)

_ABSENT = object()


@dataclass(frozen=True)
class Option:
    """One config leaf: default, accepted type and constraints."""

    default: Any
    kind: type | None  # None: any value (edflow's own keys, passed through)
    nullable: bool = False
    choices: tuple | None = None
    minimum: float | None = None
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
    "iterator": _opt("cubepose.iterator.Iterator", str),
    "datasets": {
        "train": _opt("cubepose.data.TrainDataset", str),
        "validation": _opt("cubepose.data.ValidationDataset", str),
    },
    "code_root": _opt(None, str, nullable=True),
    # The object (cubepose.object_model.Box): edge lengths x, y, z in metres, each finite and > 0
    # (item_range's low end is inclusive, so a micrometre). Unity's UR3 demo cube is the default.
    "object": {
        "dimensions": _opt([0.1, 0.1, 0.1], list, length=3, item_range=(1e-6, math.inf)),
        # none, cube, box or a list of unit quaternions [x, y, z, w]: any YAML value here, checked by the
        # component check of cubepose.object_model, which builds the group (cubepose.symmetries).
        "symmetries": _opt("none", object),
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
    },
    "data": {
        "format": _opt("auto", str, choices=("auto", "legacy", "solo", "bop")),
        "label_name": _opt(None, str, nullable=True),
        "obj_id": _opt(None, int, nullable=True),  # BOP: the object's obj_id (null: the only one)
        "instance_id": _opt(None, int, nullable=True),
        "max_instances": _opt(1, int, minimum=1),  # above 1: every instance (up to it), for a keypoint model
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
    "ckpt_freq": _opt(None, int, nullable=True, minimum=1),
    "checkpoint": {
        "sha256": _opt(None, str, nullable=True),
        "upload": _opt(None, str, nullable=True),
        "upload_attempts": _opt(3, int, minimum=1),
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
                "unity_metrics": "cubepose.evaluation.unity_metrics",
                "pose_metrics": "cubepose.evaluation.pose_metrics",
                "report": "cubepose.evaluation.report",
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


def load_config_files(*paths: str | Path, overrides: dict[str, Any] | None = None) -> dict:
    """Merge YAML config files left to right as ``edflow -b`` does (shallow ``dict.update``), set
    ``overrides`` ({"losses/orientation/weight": 2}, as edflow's ``--key value``), then validate."""
    config: dict = {}
    for path in paths:
        config.update(yaml.safe_load(Path(path).read_text()) or {})
    for key, value in (overrides or {}).items():
        *parents, leaf = key.split("/")
        tree = config
        for parent in parents:
            tree = tree.setdefault(parent, {})
            if not isinstance(tree, dict):
                raise ConfigError(f"cannot set {key!r}: {parent!r} is not a mapping")
        tree[leaf] = value
    return validate_config(config)


def load_recipe(recipe: str, root: str | Path = ".") -> dict:
    """A benchmark recipe ``A.yaml+B.yaml+key/path=value`` as a validated config: configs/base.yaml, the files
    (relative to ``root``) and the overrides, whose values are read as YAML as edflow's ``--key value``."""
    root = Path(root)
    items = recipe.split("+")
    files = [root / item for item in items if "=" not in item]
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in items if "=" in item)}
    return load_config_files(root / "configs" / "base.yaml", *files, overrides=overrides)


ConfigCheck = Callable[[dict, list[str]], None]
COMPONENT_CHECKS: list[ConfigCheck] = []


def component_check(check: ConfigCheck) -> ConfigCheck:
    """Decorator registering a component's check of its config subtree, run by ``validate_config``.

    A check appends one message per problem to ``errors``. Components register theirs where they
    are defined (cubepose.losses: the ``losses`` tree; cubepose.models.pose_net: the ``network``
    names and the two-stage crop; cubepose.object_model: ``object/symmetries``), so this module
    knows no component; building a component (PoseNet, Criterion) validates its config with its
    check in place.
    """
    COMPONENT_CHECKS.append(check)
    return check


def check_number(value: Any, path: str, errors: list[str], default: float = 1.0, minimum: float | None = None) -> Any:
    """A number outside the schema (a loss weight): coerced and checked like a schema float, problems appended."""
    return _check_leaf(value, Option(default, float, minimum=minimum), path, errors)


def validate_config(config: dict) -> dict:
    """Check ``config`` in place against the schema and the registered component checks, fill defaults, return it.

    Raises ConfigError listing every unknown, mistyped or out-of-range key.
    """
    errors: list[str] = []
    _check_tree(config, SCHEMA, "", errors)
    if not errors:
        _check_data(config["data"], errors)
        for check in COMPONENT_CHECKS:
            check(config, errors)
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))
    return config


def _check_tree(tree: dict, schema: dict, prefix: str, errors: list[str]) -> None:
    for key in tree:
        if key not in schema:
            path = prefix + str(key)
            if path in RETIRED_KEYS:
                errors.append(f"unknown key {path!r}: it was removed; did you mean {RETIRED_KEYS[path]}?")
                continue
            close = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; known keys here: {', '.join(schema)}"
            errors.append(f"unknown key {path!r}{hint}")
    for key, spec in schema.items():
        path = prefix + key
        if isinstance(spec, dict):
            sub = tree.setdefault(key, {})
            if not isinstance(sub, dict):
                errors.append(f"{path}: expected a mapping of {', '.join(spec)}, got {sub!r}")
                continue
            _check_tree(sub, spec, path + "/", errors)
            continue
        if key not in tree:
            if spec.default is not _ABSENT:
                tree[key] = copy.deepcopy(spec.default)
            continue
        tree[key] = _check_leaf(tree[key], spec, path, errors)


def _check_leaf(value: Any, spec: Option, path: str, errors: list[str]) -> Any:
    """Coerce one value to its option's type and append every constraint it breaks to ``errors``.

    Floats must be finite: YAML's ``.nan`` / ``.inf`` and edflow's ``--key inf`` would otherwise
    pass every comparison (``nan < 0`` is false) and only show up as a NaN loss later.
    """
    if spec.kind is None or (value is None and spec.nullable):
        return value
    value = _coerce(value, spec.kind)
    if not _is_kind(value, spec.kind):
        errors.append(f"{path}: expected {_kind_name(spec)}, got {value!r} ({type(value).__name__})")
        return value
    if spec.kind is float and not math.isfinite(value):
        errors.append(f"{path}: {value!r} is not a finite number; give a number such as {spec.default!r}")
        return value
    if spec.choices is not None and value not in spec.choices:
        errors.append(f"{path}: {value!r} is not one of {', '.join(map(str, spec.choices))}")
    if spec.minimum is not None and value < spec.minimum:
        errors.append(f"{path}: {value!r} is below the minimum {spec.minimum}")
    if spec.positive and value <= 0:
        errors.append(f"{path}: {value!r} must be above 0 (e.g. {spec.default!r})")
    if spec.length is not None and len(value) != spec.length:
        errors.append(f"{path}: expected a list of {spec.length} values, got {value!r}")
    elif spec.item_range is not None:
        return _check_items(value, spec, path, errors)
    return value


def _check_items(values: list, spec: Option, path: str, errors: list[str]) -> list:
    """A list of numbers (``optimizer/betas``): each finite and in ``spec.item_range`` (low inclusive)."""
    low, high = spec.item_range
    checked = [_coerce(item, float) for item in values]
    for item in checked:
        if not _is_kind(item, float) or not math.isfinite(item) or not low <= item < high:
            errors.append(f"{path}: {item!r} is not a number in [{low}, {high}); e.g. {spec.default!r}")
            return values
    return checked


YAML_SPECIAL_FLOATS = {".nan": math.nan, ".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf}


def _coerce(value: Any, kind: type) -> Any:
    """Accept numbers written as strings (YAML reads ``1e-4`` as a string; edflow's command line
    passes ``--lr inf`` and ``--lr .nan`` as strings) and true/false from edflow's command line,
    which passes ``--image_cache true`` as a string. NaN and inf are coerced so that the finiteness
    check can name them."""
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return YAML_SPECIAL_FLOATS.get(value.strip().lower(), value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _is_kind(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _kind_name(spec: Option) -> str:
    name = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        spec.kind, f"a {spec.kind.__name__}"
    )
    return name + (" or null" if spec.nullable else "")


def _check_data(data: dict, errors: list[str]) -> None:
    """Constraints across ``data`` keys: all four pixel intrinsics or none; a fraction below 1."""
    pixel_keys = ("fx", "fy", "cx", "cy")
    given = [key for key in pixel_keys if data["camera"][key] is not None]
    if given and len(given) < len(pixel_keys):
        missing = ", ".join(f"data/camera/{key}" for key in pixel_keys if key not in given)
        errors.append(f"data/camera: set all of fx, fy, cx, cy or none; missing {missing}")
    if not 0 < data["camera"]["vertical_fov"] < 180:
        errors.append(f"data/camera/vertical_fov: {data['camera']['vertical_fov']} is not between 0 and 180 degrees")
    fraction = data["validation_fraction"]
    if fraction is not None and not 0 < fraction < 1:
        errors.append(f"data/validation_fraction: {fraction} is not between 0 and 1 (or null)")
