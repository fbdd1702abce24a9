"""Configs from YAML files and benchmark recipes, merged as ``edflow -b`` merges them, then validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cubepose.config.validation import validate_config
from cubepose.errors import ConfigError


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
