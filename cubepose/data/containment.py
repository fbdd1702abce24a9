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

    Each folder is resolved once, from its resolved parent, and a file only when it is a symlink,
    so 30,000 paths in 30,000 SOLO sequence folders cost about two ``lstat`` calls each rather
    than one per path component.
    """
    prefix = os.path.join(os.path.realpath(root), "")
    folders: dict[str, str] = {}
    resolved = []
    for path in paths:
        folder, name = os.path.split(os.path.abspath(str(path)))
        real = os.path.join(_resolved_folder(folder, folders), name)
        resolved.append(os.path.realpath(real) if os.path.islink(real) else real)
    resolved = np.array(resolved, dtype=str)
    return resolved, np.char.startswith(resolved, prefix) if len(resolved) else np.zeros(0, dtype=bool)


def _resolved_folder(folder: str, known: dict[str, str]) -> str:
    """``os.path.realpath`` of an absolute, normalised ``folder``, reusing the folders resolved before."""
    if folder not in known:
        parent, name = os.path.split(folder)
        if not name:  # the file system root
            known[folder] = folder
        else:
            candidate = os.path.join(_resolved_folder(parent, known), name)
            known[folder] = os.path.realpath(candidate) if os.path.islink(candidate) else candidate
    return known[folder]


def is_plain_relative(name: str) -> bool:
    """Whether ``name`` is an openable relative path without ``..`` parts (the only kind an export writes)."""
    return is_openable_name(name) and not os.path.isabs(name) and ".." not in Path(name).parts


class Boundary:
    """A dataset's root resolved once, to tell whether a label file or folder a reader is about to open stays
    inside it after symlinks: a ``sequence.N``, scene or ``Dataset*`` folder that links elsewhere is not read."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.prefix = os.path.join(os.path.realpath(root), "")

    def holds(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` (a file or folder) resolves to the root or below it."""
        return os.path.join(os.path.realpath(path), "").startswith(self.prefix)

    def holds_entry(self, entry: os.DirEntry) -> bool:
        """``holds`` for an entry listed in a folder already inside: only a symlink can leave (no system call
        for the others, which keeps 30,000 SOLO sequence folders cheap)."""
        return not entry.is_symlink() or self.holds(entry.path)


def is_openable_name(name: str) -> bool:
    """Whether the operating system can open a file of this name at all: no NUL byte and nothing the file
    system's encoding cannot write (a lone surrogate), either of which makes ``open`` raise, not fail."""
    try:
        os.fsencode(name)
    except UnicodeError:
        return False
    return "\0" not in name
