"""The pose networks, found by ``network/type``: ``regression`` (PoseNet), ``keypoints`` (KeypointNet) or ``zoom``
(ZoomNet: locate on the whole image, keypoints on a full-resolution crop).

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
from cubepose.models.zoom_net import ZoomNet
from cubepose.registry import Registry

NETWORKS: Registry[Callable[[dict], nn.Module]] = Registry("network type")
NETWORKS.register("regression")(PoseNet)
NETWORKS.register("keypoints")(KeypointNet)
NETWORKS.register("zoom")(ZoomNet)

REGRESSION_LOSSES = ("translation", "orientation", "pose", "window")


def pose_network(config: dict) -> nn.Module:
    """The network ``network/type`` names, built for ``config`` (edflow's ``model`` key names this function)."""
    validate_config(config)
    return NETWORKS.get(config["network"]["type"], "network/type")(config)


@component_check
def check_network_type(config: dict, errors: list[str]) -> None:
    """``network/type`` exists, and its losses are ones it can be trained with: a keypoint network predicts
    keypoints (``losses/keypoints``), not a pose, so the pose losses cannot apply to it, nor the reverse; only the
    keypoint networks find several instances (``data/max_instances``): the plain one learns ``losses/displacements``
    for it, the zoom-in one crops every instance stage 1 finds."""
    network, losses = config["network"], config["losses"]
    kind, several = network["type"], config["data"]["max_instances"] > 1
    if several and kind not in ("keypoints", "zoom"):
        errors.append(
            f"data/max_instances {config['data']['max_instances']}: network/type {kind} predicts one pose per image; "
            "set network/type keypoints (with losses/displacements) or zoom to find every instance, or "
            "data/max_instances 1"
        )
    if several and kind == "keypoints" and "displacements" not in losses:
        errors.append(
            f"data/max_instances {config['data']['max_instances']} needs losses/displacements (e.g. {{type: "
            "displacement, weight: 1.0}}), which teaches the network which corners belong to which centre"
        )
    if "displacements" in losses and (not several or kind != "keypoints"):
        errors.append(
            "losses/displacements trains the keypoint network's several-instance head; use it with network/type "
            "keypoints and data/max_instances above 1, or drop it"
        )
    if kind not in NETWORKS:
        errors.append(f"network/type: unknown {NETWORKS.kind} {kind!r}; known: {', '.join(NETWORKS.names())}")
        return
    if kind in ("keypoints", "zoom"):
        posed = [name for name in losses if name in REGRESSION_LOSSES]
        needed = ("keypoints", "detection") if kind == "zoom" else ("keypoints",)
        if posed or any(name not in losses for name in needed):
            example = "{keypoints: {type: heatmap, weight: 1.0}" + (
                ", detection: {type: detection, weight: 1.0}}" if kind == "zoom" else "}"
            )
            errors.append(
                f"network/type {kind} is trained with {' and '.join('losses/' + n for n in needed)} (e.g. losses: "
                f"{example}, and losses/displacements for several instances), got losses {', '.join(losses) or 'none'}"
            )
        if network["crop"]["active"]:
            errors.append(f"network/crop/active is for the regression network; set it false for network/type {kind}")
        sizes = {"network/image_size": network["image_size"]}
        if kind == "zoom":
            sizes = {f"network/zoom/{key}": network["zoom"][key] for key in ("locate_size", "crop_size")}
        for path, size in sizes.items():
            if size % 16:
                errors.append(
                    f"{path} {size} must be a multiple of 16 for network/type {kind} (its encoder halves the image "
                    "4 times)"
                )
    elif "keypoints" in losses:
        errors.append("losses/keypoints trains a keypoint network; set network/type: keypoints, or drop the loss")
    if kind == "zoom":
        _check_zoom(network, errors)
    elif "detection" in losses:
        errors.append("losses/detection trains the zoom-in model's stage 1; set network/type: zoom, or drop the loss")


def _check_zoom(network: dict, errors: list[str]) -> None:
    """The zoom-in model: stage 1 sees at most the whole input."""
    zoom = network["zoom"]
    if zoom["locate_size"] > network["image_size"]:
        errors.append(
            f"network/zoom/locate_size {zoom['locate_size']} is larger than network/image_size "
            f"{network['image_size']}; stage 1 sees the input downscaled, so set it at most the input size"
        )
