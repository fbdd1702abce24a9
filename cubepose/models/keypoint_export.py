"""What a keypoint network's export declares: the meaning of its outputs (keypoints, scores and, with
``assign_by_shape``, the symmetry index) and the recipe of the contract note that turns them into a pose with
the user's camera (the PnP solve of ``cubepose.models.codecs.keypoints.solve_pnp``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def keypoint_outputs(slots: int, by_shape: bool) -> dict[str, str]:
    """Name and meaning of each exported output of a keypoint network that finds ``slots`` instances per image
    (1: a single one) and, ``by_shape``, names the symmetry its corner numbering used."""
    several = "" if slots == 1 else "P, "
    outputs = {
        "keypoints": f"(N, {several}9, 2) u, v in pixels of the S x S input: the object's centre, then its 8 box "
        "corners" + ("" if slots == 1 else f"; P = {slots} instances, strongest first"),
        "scores": f"(N, {several}9) each keypoint's heatmap peak (about 1: found; about 0: not found)",
    }
    if by_shape:
        outputs["symmetry"] = f"(N{', P' if several else ''}) index k into the note's symmetries: q = q_solved * g_k^-1"
    return outputs


def keypoint_contract(
    object_points: torch.Tensor, symmetries: np.ndarray | None, slots: int, min_score: float
) -> dict[str, Any]:
    """How a keypoint model's outputs become a pose: the ``object_points`` (9, 3) to solve PnP with, the camera
    model and, for a model that numbers corners by place (``assign_by_shape``), the ``symmetries`` (G, 4) its
    ``symmetry`` indexes; with ``slots`` above 1, which slots hold an instance (``min_score``)."""
    named = (
        {}
        if symmetries is None
        else {
            "symmetries": symmetries.tolist(),
            "symmetry": "the solve numbers the corners by place; turn its rotation by the inverse of "
            "symmetries[symmetry] (x, y, z, w): q = q_solved * conj(symmetries[symmetry]), then w >= 0",
        }
    )
    several = (
        {}
        if slots == 1
        else {
            "instances": f"{slots} slots per image, strongest centre first; a slot holds an instance "
            f"when its centre's score (scores[..., 0]) is at least min_score, and each is solved on its own",
            "min_score": min_score,
        }
    )
    return {
        **named,
        **several,
        "object_points": object_points.tolist(),
        "pose": "solve PnP of object_points (metres, the object's frame) against keypoints with your camera's "
        "intrinsics scaled to the S x S input (fx * S / W, fy * S / H, cx * S / W, cy * S / H), weighing each "
        "point by its score. Pixels follow u = cx + fx x / z, v = cy - fy y / z (camera y up): with OpenCV, "
        "solvePnP(object_points with y negated, keypoints, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]) gives R', t', "
        "and the pose is R = F R' F, t = F t' with F = diag(1, -1, 1); cubepose.models.codecs.keypoints.solve_pnp "
        "does this",
    }
