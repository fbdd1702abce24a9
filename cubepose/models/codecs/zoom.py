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
from cubepose.models.codecs.heatmaps import decode_at, keypoint_targets, strongest_peaks
from cubepose.models.crop import MIN_DEPTH, windows_at

Targets = dict[str, torch.Tensor]


class LocatorTargets(NamedTuple):
    """What stage 1 is trained to predict on its grid for the object's centre."""

    heatmap: torch.Tensor  # (B, 1, H, W) a unit Gaussian at the centre
    offsets: torch.Tensor  # (B, 1, 2, H, W) u, v from each cell's centre to the centre, in cells
    mask: torch.Tensor  # (B, 1, H, W) 1 where offsets and size are trained: cells near the centre
    size: torch.Tensor  # (B,) log of the apparent radius as a share of the input side


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
    """The crop window (B, 3) around each example's object, from its translation and camera (input pixels)."""
    centre, apparent = apparent_centre_and_radius(targets["translation"], targets["camera"], radius)
    return windows_at(centre, zoom["margin"] * apparent, image_size)


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
        centre, apparent = apparent_centre_and_radius(targets["translation"], targets["camera"], radius)
        maps = keypoint_targets(centre[:, None] * (size / full), size, stride, settings["sigma"], 1.0)
        return LocatorTargets(maps.heatmaps, maps.offsets, maps.mask, torch.log(apparent / full))

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
