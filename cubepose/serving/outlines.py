"""Where a camera sees each pose's box and axes: polylines in image pixels, for the overlay video and for
clients of ``cubepose serve`` that draw (the browser page), so the projection and the lens are applied once,
here, with cubepose's own projection.

Pixels are continuous coordinates in which pixel (i, j) covers [i, i + 1) x [j, j + 1) (cubepose's
convention, and a canvas's): a pixel's centre is at i + 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cubepose.evaluation.overlay import CUBE_EDGES
from cubepose.geometry.object import Box
from cubepose.models.codecs.keypoints import keypoint_pixels

EDGE_SAMPLES = 12  # points along each edge: a box seen through a distorted lens has curved edges


@dataclass(frozen=True)
class Outline:
    """One pose as seen: its box's 12 edges and its x, y, z axes (half an edge long), each a polyline of
    ``EDGE_SAMPLES`` points (u, v)."""

    edges: np.ndarray  # (12, EDGE_SAMPLES, 2)
    axes: np.ndarray  # (3, EDGE_SAMPLES, 2)

    def as_json(self) -> dict[str, list]:
        """``{"box": 12 polylines, "axes": [x, y, z] polylines}``, pixels rounded to 0.01."""
        return {"box": np.round(self.edges, 2).tolist(), "axes": np.round(self.axes, 2).tolist()}


def pose_outlines(poses: Sequence[dict], camera: np.ndarray, box: Box) -> list[Outline | None]:
    """Per pose (``{"translation", "quaternion"}`` records): its Outline as ``camera`` (4 or 12,; the image's pixels,
    with its lens) sees it, or None for a pose behind the camera or not projectable."""
    if not poses:
        return []
    edges = box.corners()[CUBE_EDGES]  # (12, 2, 3)
    along = np.linspace(0, 1, EDGE_SAMPLES)[:, None]
    edge_points = (edges[:, :1] * (1 - along) + edges[:, 1:] * along).reshape(-1, 3)  # (12 * samples, 3)
    half = np.asarray(box.dimensions) / 2
    axis_points = ((np.eye(3) * half[:, None])[:, None] * along[None]).reshape(-1, 3)  # (3 * samples, 3)
    points = torch.as_tensor(np.concatenate([edge_points, axis_points]))
    translation = torch.as_tensor([pose["translation"] for pose in poses], dtype=torch.float64)
    quaternion = torch.as_tensor([pose["quaternion"] for pose in poses], dtype=torch.float64)
    cameras = torch.as_tensor(np.asarray(camera, np.float64))[None].expand(len(poses), -1)
    pixels = keypoint_pixels(points, translation, quaternion, cameras).numpy()  # (N, P, 2)
    drawable = (translation[:, 2] > 0).numpy() & np.isfinite(pixels).all(axis=(1, 2))  # in front, projectable
    count = len(edge_points)
    return [
        Outline(lines[:count].reshape(len(CUBE_EDGES), EDGE_SAMPLES, 2), lines[count:].reshape(3, EDGE_SAMPLES, 2))
        if visible
        else None
        for lines, visible in zip(pixels, drawable, strict=True)
    ]
