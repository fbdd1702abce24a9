"""The pose networks, found by ``network/type``: ``regression`` (PoseNet) or ``keypoints`` (KeypointNet).

Every network maps prepared images to its outputs and offers ``poses(outputs, camera)`` (translation,
quaternion and, where it has one, a confidence), ``takes_camera`` (whether ``poses`` uses the camera),
``exported(images)`` (what an export computes) and ``export_spec()`` (what an export traces and declares:
cubepose.models.export_spec), so training, evaluation, prediction and export treat them alike.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cubepose.config import component_check, validate_config
from cubepose.models.keypoint_net import KeypointNet
from cubepose.models.pose_net import PoseNet
from cubepose.registry import Registry

NETWORKS: Registry[Callable[[dict], nn.Module]] = Registry("network type")
NETWORKS.register("regression")(PoseNet)
NETWORKS.register("keypoints")(KeypointNet)

REGRESSION_LOSSES = ("translation", "orientation", "pose", "window")


def pose_network(config: dict) -> nn.Module:
    """The network ``network/type`` names, built for ``config`` (edflow's ``model`` key names this function)."""
    validate_config(config)
    return NETWORKS.get(config["network"]["type"], "network/type")(config)


@component_check
def check_network_type(config: dict, errors: list[str]) -> None:
    """``network/type`` exists, and its losses are ones it can be trained with: a keypoint network predicts
    keypoints (``losses/keypoints``), not a pose, so the pose losses cannot apply to it, nor the reverse; only a
    keypoint network finds several instances (``data/max_instances``), and then learns ``losses/displacements``."""
    network, losses = config["network"], config["losses"]
    kind, several = network["type"], config["data"]["max_instances"] > 1
    if several and kind != "keypoints":
        errors.append(
            f"data/max_instances {config['data']['max_instances']}: network/type {kind} predicts one pose per image; "
            "set network/type keypoints (with losses/displacements) to find every instance, or data/max_instances 1"
        )
    if several and kind == "keypoints" and "displacements" not in losses:
        errors.append(
            f"data/max_instances {config['data']['max_instances']} needs losses/displacements (e.g. {{type: "
            "displacement, weight: 1.0}}), which teaches the network which corners belong to which centre"
        )
    if not several and "displacements" in losses:
        errors.append(
            "losses/displacements trains the several-instance head; set data/max_instances above 1, or drop it"
        )
    if kind not in NETWORKS:
        errors.append(f"network/type: unknown {NETWORKS.kind} {kind!r}; known: {', '.join(NETWORKS.names())}")
        return
    if kind == "keypoints":
        posed = [name for name in losses if name in REGRESSION_LOSSES]
        if posed or "keypoints" not in losses:
            errors.append(
                "network/type keypoints is trained with losses/keypoints (e.g. losses: {keypoints: {type: heatmap, "
                f"weight: 1.0}}}}, and losses/displacements for several instances), got losses "
                f"{', '.join(losses) or 'none'}"
            )
        if network["crop"]["active"]:
            errors.append("network/crop/active is for the regression network; set it false for network/type keypoints")
        if network["image_size"] % 16:
            errors.append(
                f"network/image_size {network['image_size']} must be a multiple of 16 for network/type keypoints "
                "(its encoder halves the image 4 times)"
            )
    elif "keypoints" in losses:
        errors.append("losses/keypoints trains a keypoint network; set network/type: keypoints, or drop the loss")
