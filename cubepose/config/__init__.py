"""The config: its schema (every key and default), validation with the components' own checks, and files.

``validate_config`` runs where a run starts (the edflow model, datasets and iterator, ``cubepose``
commands, a checkpoint's saved config); ``component_check`` is how a component declares its rules.
"""

from cubepose.config.files import load_config_files, load_recipe
from cubepose.config.schema import EDFLOW_KEYS, RETIRED_KEYS, SCHEMA, Option, defaults
from cubepose.config.validation import (
    COMPONENT_CHECKS,
    COMPONENT_LOCATIONS,
    ConfigCheck,
    check_number,
    component_check,
    validate_config,
)

__all__ = [
    "COMPONENT_CHECKS",
    "COMPONENT_LOCATIONS",
    "EDFLOW_KEYS",
    "RETIRED_KEYS",
    "SCHEMA",
    "ConfigCheck",
    "Option",
    "check_number",
    "component_check",
    "defaults",
    "load_config_files",
    "load_recipe",
    "validate_config",
]
