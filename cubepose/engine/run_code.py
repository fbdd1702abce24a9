"""The code of a run: the cubepose package that trained it, copied into ``logs/<run>/code/``.

edflow copies ``code_root`` relative to the working directory, so with a package path there
it fails anywhere but the repository root. configs/base.yaml sets ``code_root: null`` and the
Iterator copies the installed package instead: the code that actually ran, from any folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

KEPT_SUFFIXES = (".py", ".yaml")  # what edflow's own copy keeps


def copy_package_source(destination: str | Path) -> Path:
    """Copy cubepose's .py and .yaml files into ``destination``/cubepose (once) and return that folder."""
    package = Path(__file__).resolve().parents[1]  # cubepose/, above this engine/ folder
    target = Path(destination) / package.name
    if not target.exists():
        shutil.copytree(package, target, ignore=_not_source)
    return target


def _not_source(folder: str, names: list[str]) -> list[str]:
    """copytree's filter: skip everything but sub-packages and source files."""
    return [
        name
        for name in names
        if name == "__pycache__" or not ((Path(folder) / name).is_dir() or name.endswith(KEPT_SUFFIXES))
    ]
