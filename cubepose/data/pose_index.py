"""The index of a dataset: image paths, poses and cameras as arrays, plus what was skipped.

Readers of both layouts fill an ``IndexBuilder`` capture by capture; ``PoseIndex.checked``
then drops unusable captures in one vectorised pass and reports them once.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cubepose.data.containment import is_openable_name, resolve_inside
from cubepose.data.image_check import OK, PROBLEM_NAMES, inspect_images
from cubepose.errors import DatasetError
from cubepose.geometry.distortion import COEFFICIENTS
from cubepose.geometry.projection import intrinsics_from_projection
from cubepose.geometry.rotations import canonicalize_quaternions

logger = logging.getLogger(__name__)

LENS_COLUMNS = len(COEFFICIENTS)  # a lens's coefficients after a camera's fx, fy, cx, cy

PER_EXAMPLE = (
    "image_paths",
    "translations",
    "quaternions",
    "cameras",
    "image_sizes",
    "object_sizes",
    "instance_counts",
)
OUTSIDE = "outside the dataset"  # an image path that leaves the dataset root (absolute, .., symlink)
UNOPENABLE = "image name no file can have"  # a NUL byte or a lone surrogate: open() would raise, not fail
OUTSIDE_LABELS = "label file outside the dataset"  # a symlinked sequence, scene or captures file
DUPLICATE = "duplicate capture"  # a second capture of an image already indexed
EMPTY_SLOT_TRANSLATION = (0.0, 0.0, 1.0)  # what an empty instance slot holds in a batch (``filled_poses``)
EMPTY_SLOT_QUATERNION = (0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class PoseIndex:
    """Usable captures in file order, each with up to M instances of the object (M = 1: exactly one).

    ``translations`` (N, M, 3) metres and ``quaternions`` (N, M, 4) x, y, z, w in the camera frame, of the
    first ``instance_counts`` (N,) instances (the rest NaN); ``cameras`` (N, 4) fx, fy, cx, cy (N, 12 with the
    lens distortion of images cubepose generate rendered through one) in pixels of
    the original image of ``image_sizes`` (N, 2) width, height (cameras NaN where the layout records none:
    legacy cameras come from the config, ``cubepose.data.camera.with_config_camera``, unless cubepose recorded
    them; sizes from the image headers); ``object_sizes`` (N, M, 3) the labelled boxes' edge lengths in metres
    (NaN if unrecorded).
    """

    root: Path
    format: str
    image_paths: np.ndarray
    translations: np.ndarray
    quaternions: np.ndarray
    cameras: np.ndarray
    image_sizes: np.ndarray
    object_sizes: np.ndarray
    instance_counts: np.ndarray
    skipped: Counter = field(default_factory=Counter)
    total: int = 0
    labels_seen: Counter = field(default_factory=Counter)
    declared_symmetries: np.ndarray | None = None  # (S, 4) the dataset's own (BOP models_info), else None

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def max_instances(self) -> int:
        """M, the instances an example holds at most."""
        return self.translations.shape[1]

    @property
    def present(self) -> np.ndarray:
        """(N, M) bool: which instance slots hold an instance."""
        return np.arange(self.max_instances) < self.instance_counts[:, None]

    def filled_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``translations`` (N, M, 3) and ``quaternions`` (N, M, 4) with the empty slots filled by a
        harmless pose (1 m ahead, identity), so batched arithmetic stays finite; ``present`` says which count."""
        present = self.present[..., None]
        translations = np.where(present, self.translations, EMPTY_SLOT_TRANSLATION).astype(np.float32)
        return translations, np.where(present, self.quaternions, EMPTY_SLOT_QUATERNION).astype(np.float32)

    def with_object(self, object_sizes: np.ndarray, symmetries: np.ndarray | None) -> PoseIndex:
        """This index with the object's edge lengths and symmetries as the dataset declares them apart from
        the labels (BOP's models_info.json)."""
        return replace(self, object_sizes=object_sizes, declared_symmetries=symmetries)

    def subset(self, indices: np.ndarray) -> PoseIndex:
        """The examples at ``indices`` (integer indices or a boolean mask)."""
        return replace(self, **{name: getattr(self, name)[indices] for name in PER_EXAMPLE})

    def checked(self, image_root: Path | None = None) -> PoseIndex:
        """Drop unusable captures in one vectorised pass and report them once.

        Skipped: images outside ``image_root`` (default ``root``; symlinks followed), captures with a pose
        that is not finite in float32 (the dtype training uses), an object at or behind the camera (z <= 0)
        or a zero quaternion, repeated captures of one image (the first is kept) and missing, corrupt or
        oversized images. Kept examples hold the resolved image path, the file that was checked.
        """
        skipped = Counter(self.skipped)
        paths, inside = resolve_inside(self.image_paths, image_root or self.root)
        present = self.present
        with np.errstate(over="ignore", invalid="ignore"):  # 1e308 becomes inf in float32: that is the check
            translations = self.translations.astype(np.float32)
            quaternions = self.quaternions.astype(np.float32)
            norms = np.linalg.norm(quaternions.astype(np.float64), axis=-1)
        problems = {
            OUTSIDE: ~inside,
            "non-finite translation": (present & ~np.isfinite(translations).all(axis=-1)).any(axis=1),
            "cube at or behind the camera (z <= 0)": (present & ~(translations[..., 2] > 0)).any(axis=1),
            "zero or non-finite quaternion": (present & (~np.isfinite(norms) | (norms < 1e-6))).any(axis=1),
        }
        keep = np.ones(len(self), dtype=bool)
        for reason, bad in problems.items():  # each capture is counted once, under its first problem
            skipped[reason] += int((bad & keep).sum())
            keep &= ~bad
        first = np.zeros(len(self), dtype=bool)
        first[np.flatnonzero(keep)[np.unique(paths[keep], return_index=True)[1]]] = True
        skipped[DUPLICATE] += int((keep & ~first).sum())
        keep &= first
        statuses = np.full(len(self), OK, dtype=np.int8)
        image_sizes = self.image_sizes.copy()
        statuses[keep], declared = inspect_images(paths[keep])
        unrecorded = keep & (image_sizes == 0).any(axis=1)  # legacy records no size: take the header's
        image_sizes[unrecorded] = declared[unrecorded[keep]]
        for status, name in PROBLEM_NAMES.items():
            skipped[name] += int((statuses == status).sum())
        keep &= statuses == OK
        index = replace(
            self, image_paths=paths, translations=translations, quaternions=quaternions, image_sizes=image_sizes
        ).subset(keep)
        index = replace(
            index, quaternions=canonicalize_quaternions(index.quaternions).astype(np.float32), skipped=+skipped
        )
        index.report()
        if len(index) == 0:
            raise DatasetError(f"no usable captures in {self.root} ({index.skipped_summary()}){self._label_hint()}")
        return index

    def _label_hint(self) -> str:
        if not self.labels_seen:
            return "; check the export"
        labels = ", ".join(f"{name} ({count})" for name, count in self.labels_seen.most_common())
        setting = "data/obj_id" if self.format == "bop" else "data/label_name (and data/instance_id)"
        return f"; labels present: {labels}; set {setting} to pick the cube"

    def skipped_summary(self) -> str:
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common())
        return f"skipped {sum(self.skipped.values())} of {self.total} captures" + (f": {reasons}" if reasons else "")

    def report(self) -> None:
        """Log once what was skipped while indexing."""
        if self.skipped:
            logger.warning("%s: %s", self.root, self.skipped_summary())


class Pose(NamedTuple):
    """One labelled box of a capture: translation (3,) metres, rotation (4,) x, y, z, w, edge lengths or None."""

    translation: list[float]
    rotation: list[float]
    size: list[float] | None = None


def _with_lenses(cameras: np.ndarray, lenses: np.ndarray) -> np.ndarray:
    """``cameras`` (N, 4), or (N, 12) with each capture's lens after its intrinsics when any capture has one
    (zeros: a pinhole), the camera a keypoint model solves with (cubepose.geometry.distortion)."""
    return np.concatenate([cameras, lenses], axis=1) if lenses.any() else cameras


def _padded(rows: list[list[list[float]]], slots: int, width: int) -> np.ndarray:
    """(N, slots, width) float64 of per-capture lists of vectors, NaN where a capture has fewer."""
    counts = np.array([len(vectors) for vectors in rows], dtype=np.int64)
    flat = np.array([vector for vectors in rows for vector in vectors], dtype=np.float64).reshape(-1, width)
    slot = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
    padded = np.full((len(rows), slots, width), np.nan)
    padded[np.repeat(np.arange(len(rows)), counts), slot] = flat
    return padded


class IndexBuilder:
    """Collects captures while a reader walks a dataset, then builds the checked ``PoseIndex``."""

    def __init__(self, root: Path, fmt: str) -> None:
        self.root, self.format = root, fmt
        self.image_root = root  # images must resolve inside it (legacy: the folder filenames are relative to)
        self.paths: list[str] = []
        self.translations: list[list[float]] = []
        self.rotations: list[list[float]] = []
        self.projections: list[list[float]] = []
        self.sizes: list[list[float]] = []
        self.intrinsics: list[list[float]] = []
        self.lenses: list[list[float]] = []
        self.object_sizes: list[list[list[float]]] = []
        self.skipped: Counter = Counter()
        self.labels_seen: Counter = Counter()
        self.total = 0

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def outside_label_file(self, path: str) -> None:
        """A label file or folder that links outside the dataset: not read, counted as one skipped capture."""
        logger.warning("%s links outside the dataset %s; not read (copy it in to use it)", path, self.root)
        self.total += 1
        self.skip(OUTSIDE_LABELS)

    def add(
        self,
        path: str,
        poses: list[Pose],
        projection: list[float] | None = None,
        size: list[float] | None = None,
        intrinsics: list[float] | None = None,
        lens: list[float] | None = None,
    ) -> None:
        """One usable capture: its boxes' poses and edge lengths (none for an image without the object);
        ``projection`` is Unity's (m00, m11) and ``size`` the image's (width, height) when the layout records
        them, ``intrinsics`` exact fx, fy, cx, cy (which win), ``lens`` the distortion cubepose generate rendered
        through. A path no file can have is skipped."""
        if not is_openable_name(path):
            self.skip(UNOPENABLE)
            return
        self.paths.append(path)
        self.translations.append([pose.translation for pose in poses])
        self.rotations.append([pose.rotation for pose in poses])
        self.object_sizes.append([pose.size if pose.size is not None else [np.nan] * 3 for pose in poses])
        self.projections.append(projection if projection is not None else [np.nan] * 2)
        self.sizes.append(size if size is not None else [0, 0])
        self.intrinsics.append(intrinsics if intrinsics is not None else [np.nan] * 4)
        self.lenses.append(lens if lens is not None else [0.0] * LENS_COLUMNS)

    def build(self, max_instances: int = 1) -> PoseIndex:
        """The checked index, every example padded to ``max_instances`` instance slots."""
        projections = np.array(self.projections, dtype=np.float64).reshape(-1, 2)
        sizes = np.array(self.sizes, dtype=np.float64).reshape(-1, 2)
        cameras = intrinsics_from_projection(projections[:, 0], projections[:, 1], sizes[:, 0], sizes[:, 1])
        exact = np.array(self.intrinsics, dtype=np.float64).reshape(-1, 4)
        recorded = np.isfinite(exact).all(axis=1)
        cameras[recorded] = exact[recorded]
        index = PoseIndex(
            root=self.root,
            format=self.format,
            image_paths=np.array(self.paths, dtype=str),
            translations=_padded(self.translations, max_instances, 3),
            quaternions=_padded(self.rotations, max_instances, 4),
            cameras=_with_lenses(cameras.reshape(-1, 4), np.array(self.lenses, np.float64).reshape(-1, LENS_COLUMNS)),
            image_sizes=sizes.astype(np.int64),
            object_sizes=_padded(self.object_sizes, max_instances, 3),
            instance_counts=np.array([len(poses) for poses in self.translations], dtype=np.int64),
            skipped=Counter(self.skipped),
            total=self.total,
            labels_seen=Counter(self.labels_seen),
        )
        return index.checked(self.image_root)
