"""The zoom-in model's stage-1 codec: where the object is and how large it looks, as a centre heatmap with
sub-cell offsets and a size map on the downscaled whole image (CenterNet's centre and size), and the crop
windows that follow from them; in training, the true window jittered so that stage 2 learns to tolerate
stage 1's errors (CDPN's dynamic zoom-in)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from cubepose.errors import ConfigError
from cubepose.geometry.object import Box
from cubepose.geometry.projection import pinhole_pixels
from cubepose.models.codecs.heatmaps import decode_at, keypoint_targets, nearest_centres, strongest_peaks
from cubepose.models.codecs.instances import Targets, instance_poses
from cubepose.models.crop import MIN_DEPTH, windows_at


class LocatorTargets(NamedTuple):
    """What stage 1 is trained to predict on its grid for the object's centre."""

    heatmap: torch.Tensor  # (B, 1, H, W) a unit Gaussian at the centre
    offsets: torch.Tensor  # (B, 1, 2, H, W) u, v from each cell's centre to the centre, in cells
    mask: torch.Tensor  # (B, 1, H, W) 1 where offsets and size are trained: cells near the centre
    size: torch.Tensor  # (B, H, W) log of the apparent radius as a share of the input side (the nearest instance's)


class LocatorMaps(NamedTuple):
    """What stage 1 predicts, as the ``detection`` loss compares it with LocatorTargets."""

    heatmap: torch.Tensor  # (B, 1, H, W)
    offsets: torch.Tensor  # (B, 1, 2, H, W)
    size: torch.Tensor  # (B, 1, H, W)


def apparent_centre_and_radius(
    translation: torch.Tensor, camera: torch.Tensor, radius: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the object's centre projects (B, 2) and the radius (B,) in pixels its bounding sphere of ``radius``
    metres appears with, by the larger focal length (a crop must hold it along both axes)."""
    z = translation[:, 2:].clamp_min(MIN_DEPTH)
    centre = torch.cat([translation[:, :2], z], -1)[:, None]
    u, v = (pixels[:, 0] for pixels in pinhole_pixels(centre, camera))
    return torch.stack([u, v], -1), camera[:, :2].amax(dim=-1) * radius / z[:, 0]


def true_windows(targets: Targets, zoom: dict, image_size: int, radius: float) -> torch.Tensor:
    """The crop window (B, 3) around each example's object, from its translation and camera (input pixels); with
    several instances (``instance_poses``), around one of them drawn at random (the first for an image of none)."""
    translation = targets["translation"]
    if "translations" in targets:
        translations, _, present = instance_poses(targets)
        drawn = torch.multinomial(present.float() + ~present.any(dim=1, keepdim=True), 1)  # (B, 1)
        translation = translations.gather(1, drawn[..., None].expand(-1, -1, 3))[:, 0]
    centre, apparent = apparent_centre_and_radius(translation, targets["camera"], radius)
    return windows_at(centre, zoom["margin"] * apparent, image_size)


def centred_instance(targets: Targets, image_size: int, radius: float) -> Targets:
    """``targets`` of several instances reduced to the one each crop ``windows`` (B, 3) is centred on, the instance
    whose centre is nearest the window's (none for an image of none): what stage 2 is to find on the crop."""
    if "translations" not in targets:
        return targets
    translations, quaternions, present = instance_poses(targets)
    camera = targets["camera"].repeat_interleave(present.shape[1], dim=0)
    centres, _ = apparent_centre_and_radius(translations.flatten(0, 1), camera, radius)
    window_centres = (targets["windows"][:, None, :2] + 1) * image_size / 2  # (B, 1, 2) input pixels
    distance = (centres.unflatten(0, present.shape) - window_centres).norm(dim=-1)
    nearest = torch.where(present, distance, torch.inf).argmin(dim=1)[:, None]  # (B, 1)
    return {
        **targets,
        "translations": translations.gather(1, nearest[..., None].expand(-1, -1, 3)),
        "quaternions": quaternions.gather(1, nearest[..., None].expand(-1, -1, 4)),
        "instance_count": present.any(dim=1).to(targets["instance_count"].dtype),
    }


def jittered(windows: torch.Tensor, shift: float, scale: float) -> torch.Tensor:
    """``windows`` (B, 3) moved by up to ``shift`` of their half side along each axis and scaled by up to
    exp(±``scale``), uniformly: the errors stage 1 makes, so that stage 2 is trained on them."""
    noise = torch.rand_like(windows) * 2 - 1
    half = windows[:, 2:].exp()
    return torch.cat([windows[:, :2] + shift * half * noise[:, :2], windows[:, 2:] + scale * noise[:, 2:]], -1)


def locator_target(network: dict, box: Box | None = None) -> Callable[[Targets], LocatorTargets]:
    """Stage 1's targets: the centre's Gaussian, offsets and size on the ``zoom/locate_size`` grid."""
    zoom, settings = network["zoom"], network["keypoints"]
    size, stride, full = zoom["locate_size"], zoom["locate_stride"], network["image_size"]
    radius = (box or Box()).radius

    def target(targets: Targets) -> LocatorTargets:
        if "camera" not in targets:
            raise ConfigError("losses/detection needs each example's camera; the dataset returned none")
        translations, _, present = instance_poses(targets)  # every instance's centre and size
        camera = targets["camera"].repeat_interleave(present.shape[1], dim=0)
        centres, apparent = apparent_centre_and_radius(translations.flatten(0, 1), camera, radius)
        pixels = centres.unflatten(0, present.shape)[:, :, None] * (size / full)  # (B, M, 1, 2) on the grid image
        maps = keypoint_targets(pixels, size, stride, settings["sigma"], 1.0, present)
        nearest, _ = nearest_centres(pixels, present, size, stride, 1.0)  # (B, H, W) slot index
        sizes = torch.log(apparent / full).unflatten(0, present.shape)
        return LocatorTargets(
            maps.heatmaps, maps.offsets, maps.mask, sizes.gather(1, nearest.flatten(1)).view_as(nearest)
        )

    return target


def locator_prediction(outputs: dict[str, torch.Tensor]) -> LocatorMaps:
    """Stage 1's maps, as the ``detection`` loss compares them with LocatorTargets."""
    return LocatorMaps(outputs["locator_heatmap"], outputs["locator_offsets"], outputs["locator_size"])


def decode_locator(
    maps: LocatorMaps, stride: int, scale: float, count: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``count`` strongest candidates for the object's centre (B, C, 2) in input pixels (``scale`` input
    pixels per grid-image pixel), strongest first, their peak scores (B, C) and apparent radii (B, C) as a share
    of the input side, read at each peak's cell."""
    cells = strongest_peaks(maps.heatmap, count)
    centres = decode_at(maps.heatmap, maps.offsets, cells, stride) * scale
    scores = maps.heatmap.flatten(1).gather(1, cells).float()
    sizes = maps.size.flatten(1).gather(1, cells).float()
    return centres, scores, sizes.exp()
