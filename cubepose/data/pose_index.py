"""The index of a dataset split: image paths and poses as arrays, plus what was skipped."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cubepose.errors import DatasetError
from cubepose.geometry import canonicalize_quaternions

logger = logging.getLogger(__name__)

_SPLIT_SALT = {"train": 1, "validation": 2, "test": 3}


@dataclass(frozen=True)
class PoseIndex:
    """Poses of usable captures: ``image_paths`` (N,), ``translations`` (N, 3), ``quaternions`` (N, 4)."""

    root: Path
    format: str
    image_paths: np.ndarray
    translations: np.ndarray
    quaternions: np.ndarray
    skipped: Counter = field(default_factory=Counter)
    total: int = 0

    @classmethod
    def from_lists(cls, root, fmt, paths, translations, rotations, skipped, total) -> PoseIndex:
        return cls(
            root=Path(root),
            format=fmt,
            image_paths=np.array(paths, dtype=str),
            translations=np.array(translations, dtype=np.float64).reshape(-1, 3),
            quaternions=np.array(rotations, dtype=np.float64).reshape(-1, 4),
            skipped=Counter(skipped),
            total=total,
        )

    def __len__(self) -> int:
        return len(self.image_paths)

    def checked(self) -> PoseIndex:
        """Drop captures with a non-finite pose, a zero quaternion or a missing image; report once."""
        skipped = Counter(self.skipped)
        norms = np.linalg.norm(self.quaternions, axis=1)
        bad_translation = ~np.isfinite(self.translations).all(axis=1)
        bad_rotation = ~np.isfinite(norms) | (norms < 1e-6)
        missing = np.array([not os.path.isfile(p) for p in self.image_paths], dtype=bool)
        skipped["non-finite translation"] += int(bad_translation.sum())
        skipped["zero or non-finite quaternion"] += int((bad_rotation & ~bad_translation).sum())
        skipped["missing image"] += int((missing & ~bad_rotation & ~bad_translation).sum())
        keep = ~(bad_translation | bad_rotation | missing)
        index = replace(
            self,
            image_paths=self.image_paths[keep],
            translations=self.translations[keep].astype(np.float32),
            quaternions=canonicalize_quaternions(self.quaternions[keep]).astype(np.float32),
            skipped=+skipped,
        )
        index.report()
        if len(index) == 0:
            raise DatasetError(f"no usable captures in {self.root} ({index.skipped_summary()}); check the export")
        return index

    def skipped_summary(self) -> str:
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common())
        return f"skipped {sum(self.skipped.values())} of {self.total} captures" + (f": {reasons}" if reasons else "")

    def report(self) -> None:
        """Log once what was skipped while indexing."""
        if self.skipped:
            logger.warning("%s: %s", self.root, self.skipped_summary())

    def subset(self, indices: np.ndarray) -> PoseIndex:
        return replace(
            self,
            image_paths=self.image_paths[indices],
            translations=self.translations[indices],
            quaternions=self.quaternions[indices],
        )


def sample_indices(count: int, sample_size: int | None, seed: int, split: str) -> np.ndarray:
    """Sorted indices of a seeded random subset (all when ``sample_size`` is None or too large).

    numpy's Generator is specified to give the same stream for the same seed on every
    machine, so a subset is identical on every run.
    """
    if sample_size is None or sample_size >= count:
        if sample_size is not None and sample_size > count:
            logger.warning(
                "data/%s/sample_size %d exceeds the %d usable captures; using all", split, sample_size, count
            )
        return np.arange(count)
    rng = np.random.default_rng([seed, _SPLIT_SALT.get(split, 0)])
    return np.sort(rng.choice(count, size=sample_size, replace=False))
