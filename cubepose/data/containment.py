"""Keeping a dataset's image paths inside its root, so a capture cannot make cubepose read any other file.

A capture names its image by a path relative to the export; an absolute path, ``..`` parts or a
symlink could point anywhere on the machine, and the pixels of that file would be trained on and
shown in report.html. Paths are resolved after symlinks and kept only when they stay under the
resolved root; the index then holds the resolved path, so what is opened is what was checked.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def resolve_inside(paths: np.ndarray, root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Resolved ``paths`` and a mask of those that lie under ``root`` (both resolved after symlinks).

    Folders are resolved once each (an export has a handful), files only when they are symlinks,
    so 30,000 paths cost one ``lstat`` each rather than one per path component.
    """
    prefix = os.path.join(os.path.realpath(root), "")
    resolved_folders: dict[str, str] = {}
    resolved = np.empty(len(paths), dtype=object)
    inside = np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        folder, name = os.path.split(os.path.abspath(str(path)))
        real_folder = resolved_folders.get(folder)
        if real_folder is None:
            real_folder = resolved_folders[folder] = os.path.realpath(folder)
        real = os.path.join(real_folder, name)
        if os.path.islink(real):
            real = os.path.realpath(real)
        resolved[i], inside[i] = real, real.startswith(prefix)
    return resolved.astype(str) if len(paths) else np.asarray(paths, dtype=str), inside


def is_plain_relative(name: str) -> bool:
    """Whether ``name`` is a relative path without ``..`` parts (the only kind an export writes)."""
    return not os.path.isabs(name) and ".." not in Path(name).parts
