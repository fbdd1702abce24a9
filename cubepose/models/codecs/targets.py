"""What a network should predict, built from a batch's labels: the codec side of training.

Each builder takes the network config (and the object) and returns ``target(targets) -> tensor`` over a
batch's label tensors: the two-stage model's crop window, a keypoint network's heatmaps and offsets
(cubepose.models.codecs.heatmaps) and its several-instance displacements, as typed records the losses
``heatmap`` and ``displacement`` take.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cubepose.errors import ConfigError
from cubepose.geometry.object import Box
from cubepose.geometry.symmetries import equivalent_classes
from cubepose.models.codecs.heatmaps import (
    DisplacementTargets,
    KeypointMaps,
    KeypointTargets,
    displacement_targets,
    keypoint_targets,
    nearest_centres,
)
from cubepose.models.codecs.instances import Targets, instance_poses
from cubepose.models.codecs.keypoints import canonical_assignment, keypoint_pixels, object_keypoints, view_canonical
from cubepose.models.codecs.zoom import centred_instance
from cubepose.models.crop import crop_cameras, cube_windows


def concatenated(keys: tuple[str, ...]) -> Callable[[Targets], torch.Tensor]:
    """A quantity's model outputs, or the targets a dataset provides: its keys concatenated."""
    return lambda targets: torch.cat([targets[key] for key in keys], dim=-1)


def window_target(network: dict, box: Box | None = None) -> Callable[[Targets], torch.Tensor]:
    """The crop window a two-stage model should predict, from the true translation, the camera and the object."""
    image_size, margin = network["image_size"], network["crop"]["margin"]

    def target(targets: Targets) -> torch.Tensor:
        if "camera" not in targets:
            raise ConfigError("losses/window needs each example's camera; the dataset returned none")
        return cube_windows(targets["translation"], targets["camera"], image_size, margin, box)

    return target


def _instance_keypoints(
    targets: Targets, box: Box, points: torch.Tensor, by_shape: bool, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The keypoints (B, M, K, 2) of every instance in input pixels, each turned to its view-canonical
    orientation first (``keypoints_target``), which slots count (B, M), and with ``by_shape`` the index (B, M)
    of the shape symmetry that turn took."""
    if "camera" not in targets:
        raise ConfigError(f"losses/{name} needs each example's camera; the dataset returned none")
    translations, quaternions, present = instance_poses(targets)
    batch, slots = present.shape
    translation, quaternion = translations.flatten(0, 1), quaternions.flatten(0, 1)
    index = None
    if by_shape:
        quaternion, index = canonical_assignment(quaternion, translation, box.shape_symmetries)
        index = index.unflatten(0, (batch, slots))
    else:
        quaternion = view_canonical(quaternion, translation, box.symmetries)
    camera = targets["camera"].repeat_interleave(slots, dim=0)
    pixels = keypoint_pixels(points, translation, quaternion, camera).unflatten(0, (batch, slots))
    return pixels, present, index


def keypoints_target(network: dict, box: Box | None = None) -> Callable[[Targets], KeypointTargets]:
    """What a keypoint network should predict (cubepose.models.codecs.heatmaps): the heatmaps, offsets and their
    mask of the keypoints of ``box`` projected with each example's camera, the object turned to its
    view-canonical orientation first (under its symmetries; with ``assign_by_shape`` under the bare box's G
    shape symmetries, and ``names``: 1 for the symmetry indices the head may name, those of the instance whose
    centre is nearest). Several instances (``instance_poses``) share the maps."""
    box = box or Box()
    points = torch.as_tensor(object_keypoints(box), dtype=torch.float32)
    settings = network["keypoints"]
    size, stride, radius = network["image_size"], settings["stride"], settings["offset_radius"]
    zoomed = network["type"] == "zoom"  # the keypoints are those of the crop, in its camera
    if zoomed:
        size = network["zoom"]["crop_size"]
    by_shape = settings["assign_by_shape"]
    if by_shape:
        right_names = torch.as_tensor(equivalent_classes(box.shape_symmetries, box.symmetries), dtype=torch.float32)

    def target(targets: Targets) -> KeypointTargets:
        if zoomed:  # the crop's instance, in the crop's camera
            targets = centred_instance(targets, network["image_size"], box.radius)
            targets = {**targets, "camera": _crop_camera(targets, network)}
        pixels, present, index = _instance_keypoints(targets, box, points, by_shape, "keypoints")
        maps = keypoint_targets(pixels, size, stride, settings["sigma"], radius, present)
        if not by_shape:
            return maps
        nearest, _ = nearest_centres(pixels, present, size, stride, radius)  # (B, H, W) slot index
        names = right_names.to(maps.mask.device)[index]  # (B, M, G)
        chosen = names.gather(1, nearest.flatten(1)[..., None].expand(-1, -1, names.shape[-1]))
        return maps._replace(names=chosen.transpose(1, 2).unflatten(2, nearest.shape[1:]))

    return target


def _crop_camera(targets: Targets, network: dict) -> torch.Tensor:
    """The camera of each example's stage-2 crop (the windows the zoom-in model cut, given with the targets)."""
    if "camera" not in targets:
        raise ConfigError("losses/keypoints needs each example's camera; the dataset returned none")
    windows = targets["windows"].detach()
    return crop_cameras(targets["camera"], windows, network["image_size"], network["zoom"]["crop_size"])


def displacements_target(network: dict, box: Box | None = None) -> Callable[[Targets], DisplacementTargets]:
    """What tells instances apart (cubepose.models.codecs.heatmaps.displacement_targets): the displacements from
    the cells around each centre to its other keypoints, and the mask of those cells."""
    box = box or Box()
    points = torch.as_tensor(object_keypoints(box), dtype=torch.float32)
    settings = network["keypoints"]

    def target(targets: Targets) -> DisplacementTargets:
        pixels, present, _ = _instance_keypoints(targets, box, points, settings["assign_by_shape"], "displacements")
        size, stride, radius = network["image_size"], settings["stride"], settings["offset_radius"]
        return displacement_targets(pixels, present, size, stride, radius)

    return target


def keypoints_prediction(outputs: dict[str, torch.Tensor]) -> KeypointMaps:
    """A keypoint network's maps, as ``heatmap`` compares them with KeypointTargets."""
    return KeypointMaps(outputs["heatmaps"], outputs["offsets"], outputs.get("symmetry_logits"))
