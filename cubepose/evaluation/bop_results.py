"""An evaluation's poses as a BOP results CSV (``scene_id,im_id,obj_id,score,R,t,time``), as bop_toolkit reads it.

One row per estimate: R row-major and t in millimetres in BOP's (OpenCV) camera frame (``cubepose.data.bop``),
the keypoint network's confidence as the score (1 for a regression), time -1 (not measured). Scene and image
ids come from BOP image paths (``<scene>/rgb/<image>.png``); images of other layouts get scene 0 and their index.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cubepose.data.bop import bop_poses
from cubepose.io.atomic import atomic_write_text

RESULTS_FILE = "bop_results.csv"
HEADER = "scene_id,im_id,obj_id,score,R,t,time"
BOP_IMAGE_PATH = re.compile(r"(\d+)[/\\]rgb[/\\](\d+)\.\w+$")
UNKNOWN_TIME = -1


def image_ids(image_paths: np.ndarray | None, count: int) -> np.ndarray:
    """(count, 2) scene and image ids: parsed from BOP paths, else scene 0 and the image's index."""
    ids = np.stack([np.zeros(count, np.int64), np.arange(count)], axis=1)
    if image_paths is None:
        return ids
    for row, path in enumerate(np.asarray(image_paths)[:count]):
        found = BOP_IMAGE_PATH.search(str(path))
        if found:
            ids[row] = int(found.group(1)), int(found.group(2))
    return ids


def write_bop_results(
    root: Path,
    translations: np.ndarray,
    quaternions: np.ndarray,
    scores: np.ndarray,
    images: np.ndarray,
    ids: np.ndarray,
    obj_id: int,
) -> Path:
    """``root``/bop_results.csv of estimates (K, 3) m and (K, 4), their ``scores`` (K,) and ``images`` (K,) index
    into ``ids`` (scene, image); non-finite estimates are left out (BOP counts them as missed)."""
    finite = np.isfinite(translations).all(axis=1) & np.isfinite(quaternions).all(axis=1) & np.isfinite(scores)
    rotations, millimetres = bop_poses(translations[finite], quaternions[finite])
    lines = [HEADER]
    for (scene, image), score, rotation, translation in zip(
        ids[images[finite]], scores[finite], rotations, millimetres, strict=True
    ):
        r = " ".join(f"{v:.9g}" for v in rotation.reshape(-1))
        t = " ".join(f"{v:.9g}" for v in translation)
        lines.append(f"{scene},{image},{obj_id},{score:.6g},{r},{t},{UNKNOWN_TIME}")
    path = root / RESULTS_FILE
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
