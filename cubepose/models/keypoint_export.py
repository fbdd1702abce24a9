"""What a keypoint network's export declares: the meaning of its outputs (keypoints, scores and, with
``assign_by_shape``, the symmetry index) and the recipe of the contract note that turns them into a pose with
the user's camera (the PnP solve of ``cubepose.models.codecs.keypoints.solve_pnp``); for the zoom-in model
also the check that withholds a pose that cannot be right."""

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


def zoom_outputs(by_shape: bool, slots: int) -> dict[str, str]:
    """Name and meaning of each exported output of the zoom-in model that finds ``slots`` instances per image: a
    keypoint model's, found on the crop and given in the input's pixels, then what its plausibility check reads."""
    axes = "(N,)" if slots == 1 else "(N, P)"
    return {
        **keypoint_outputs(slots, by_shape),
        "radius": f"{axes} the object's apparent radius in pixels of the S x S input, as stage 1 found it",
        "located": f"{axes} stage 1's centre heatmap peak where it found the object",
    }


def zoom_contract(zoom: dict, object_radius: float, min_score: float, slots: int) -> dict[str, Any]:
    """The zoom-in model's entries of the note: how it found the keypoints, and when its pose must be withheld
    (``zoom``: the network/zoom settings; ``object_radius``: the bounding sphere's radius in metres; ``slots``:
    instances per image)."""
    crop, margin = zoom["crop_size"], zoom["margin"]
    several = (
        {}
        if slots == 1
        else {
            "instances": f"{slots} slots per image, one crop at each of stage 1's strongest centres, strongest "
            "first; a slot holds an instance when its solved pose passes the found recipe, and each is solved on "
            "its own",
        }
    )
    return {
        **several,
        "stages": f"one graph: stage 1 finds the object on the input resized to {zoom['locate_size']} px, stage 2 "
        f"finds the keypoints on a {crop} px crop cut there ({margin} apparent radii on each side, up to "
        f"{zoom['candidates']} candidates, the clearest kept); the keypoints are mapped back to the input's pixels",
        "object_radius": object_radius,
        "thresholds": {
            "depth_tolerance": zoom["depth_tolerance"],
            "max_reprojection_error": zoom["max_reprojection_error"],
            "min_confidence": zoom["min_confidence"],
            "min_score": min_score,
        },
        "found": "withhold the solved pose (found: false) unless all hold: |log(t_z / d)| <= log(1 + "
        "depth_tolerance) with d = max(fx, fy) * object_radius / radius (fx, fy scaled to the S x S input); "
        f"the mean distance of the keypoints from the pose's projection, in input pixels, times {crop} / "
        f"(2 * {margin} * radius) (crop pixels) <= max_reprojection_error; mean(clip(scores, 0, 1)) >= "
        "min_confidence; located >= min_score. cubepose's PosePredictor applies the same check",
    }
