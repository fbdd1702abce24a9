"""Validation of a config against the schema and the components' own checks.

Unknown or mistyped keys fail at start with one message naming every problem. Components (the losses,
the networks) declare their checks with ``component_check`` in their own modules; the modules that
declare them are listed in ``COMPONENT_LOCATIONS`` and imported before the first validation, so every
check runs whatever the caller happened to import, and this package imports no component.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import math
from collections.abc import Callable
from typing import Any

from cubepose.config.schema import _ABSENT, RETIRED_KEYS, SCHEMA, Option
from cubepose.errors import ConfigError
from cubepose.geometry.camera import KEYS, Camera, CameraError
from cubepose.geometry.symmetries import symmetry_problem

# The modules whose import registers component checks (mmengine's lazy ``locations``): a new component
# package that checks its own keys adds itself here.
COMPONENT_LOCATIONS = ("cubepose.losses", "cubepose.models")

ConfigCheck = Callable[[dict, list[str]], None]
COMPONENT_CHECKS: list[ConfigCheck] = []


def component_check(check: ConfigCheck) -> ConfigCheck:
    """Decorator registering a component's check of its config subtree, run by ``validate_config``.

    A check appends one message per problem to ``errors``. Components register theirs where they
    are defined (cubepose.losses: the ``losses`` tree; cubepose.models: the ``network`` names and
    the two-stage crop), in a module listed in ``COMPONENT_LOCATIONS``; a user's own component
    registers its check when its module is imported, before the config that names it is validated.
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
    _import_component_locations()
    errors: list[str] = []
    _check_tree(config, SCHEMA, "", errors)
    if not errors:
        _check_data(config["data"], errors)
        _check_object(config, errors)
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
    if spec.maximum is not None and value > spec.maximum:
        errors.append(f"{path}: {value!r} is above the maximum {spec.maximum}")
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
    """Constraints across ``data`` keys: all four pixel intrinsics or none, and a camera images can have; a
    fraction below 1."""
    given = [key for key in KEYS if data["camera"][key] is not None]
    if given and len(given) < len(KEYS):
        missing = ", ".join(f"data/camera/{key}" for key in KEYS if key not in given)
        errors.append(f"data/camera: set all of fx, fy, cx, cy or none; missing {missing}")
    elif given:
        try:
            Camera.from_mapping({key: data["camera"][key] for key in KEYS})
        except CameraError as err:
            errors.append(f"data/camera: {err}")
    if not 0 < data["camera"]["vertical_fov"] < 180:
        errors.append(f"data/camera/vertical_fov: {data['camera']['vertical_fov']} is not between 0 and 180 degrees")
    fraction = data["validation_fraction"]
    if fraction is not None and not 0 < fraction < 1:
        errors.append(f"data/validation_fraction: {fraction} is not between 0 and 1 (or null)")


def _check_object(config: dict, errors: list[str]) -> None:
    """``object/symmetries``: none, cube, box or a list of finite unit quaternions [x, y, z, w]."""
    problem = symmetry_problem(config["object"]["symmetries"])
    if problem is not None:
        errors.append(f"object/symmetries: {problem}")


def _import_component_locations() -> None:
    """Import the modules that register component checks (once; later calls find them in sys.modules)."""
    for location in COMPONENT_LOCATIONS:
        importlib.import_module(location)
