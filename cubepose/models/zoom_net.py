"""The zoom-in keypoint network (``network/type: zoom``): find the object on the whole image downscaled, then
solve its pose from the keypoints of a fixed-size crop cut there at the input's full resolution.

Stage 1 (the locator) sees the input resized to ``zoom/locate_size`` and predicts the object's centre and
apparent size (cubepose.models.codecs.zoom). Stage 2 is a keypoint network (cubepose.models.keypoint_net) on a
``zoom/crop_size`` crop around that centre, ``zoom/margin`` times the object's apparent radius on each side:
the object appears at one scale whatever its distance, at the resolution the image has. A crop is only another
camera (cubepose.models.crop.crop_cameras), so the PnP solve on the crop's keypoints gives the pose in the
input camera's frame. In training stage 2 sees jittered true windows (``teacher_windows``), at evaluation and
prediction the windows stage 1 finds.
"""

from __future__ import annotations

import copy
import math
from typing import NoReturn

import torch
import torch.nn.functional as F
from torch import nn

from cubepose.errors import ConfigError, CubeposeError
from cubepose.geometry.object import Box
from cubepose.models.codecs.zoom import LocatorMaps, decode_locator, jittered, locator_prediction, true_windows
from cubepose.models.crop import crop_cameras, crop_windows, to_input_pixels, windows_at
from cubepose.models.heatmap_trunk import DECODER_WIDTH, HeatmapTrunk
from cubepose.models.keypoint_net import KeypointNet

STAGE_2_SEED_OFFSET = 1  # stage 2's initial weights are drawn from seed + 1, not a copy of stage 1's trunk


class Locator(HeatmapTrunk):
    """Stage 1: ``locator_heatmap`` (B, 1, H, W) of the object's centre, its ``locator_offsets`` (B, 1, 2, H, W)
    in cells and ``locator_size`` (B, 1, H, W), the log of its apparent radius as a share of the input side."""

    def __init__(self, stride: int) -> None:
        super().__init__(stride)
        self.heatmap_head = nn.Conv2d(DECODER_WIDTH, 1, 1)
        self.offset_head = nn.Conv2d(DECODER_WIDTH, 2, 1)
        self.size_head = nn.Conv2d(DECODER_WIDTH, 1, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.features(images)
        return {
            "locator_heatmap": self.heatmap_head(x),
            "locator_offsets": self.offset_head(x)[:, None],
            "locator_size": self.size_head(x),
        }


class ZoomNet(nn.Module):
    """Both stages: images (B, 3, S, S) in, the locator's maps, the crop ``windows`` (B, 3) used and stage 2's
    keypoint maps on the crops out; ``poses`` solves them with the images' cameras."""

    takes_camera = True  # poses() solves with the images' camera

    def __init__(self, config: dict) -> None:
        """The network of a validated ``config`` (cubepose.config.validate_config, run where the run starts)."""
        super().__init__()
        network = config["network"]
        if network["type"] != "zoom":
            raise ConfigError(f"network/type is {network['type']!r}; ZoomNet builds network/type zoom")
        zoom = network["zoom"]
        self.zoom = dict(zoom)
        self.image_size = network["image_size"]
        self.radius = Box.from_config(config).radius
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["seed"])
            self.locator = Locator(zoom["locate_stride"])
        crop_config = copy.deepcopy(config)
        crop_config["network"]["image_size"] = zoom["crop_size"]
        crop_config["seed"] = config["seed"] + STAGE_2_SEED_OFFSET
        self.keypoint_net = KeypointNet(crop_config)

    def forward(self, images: torch.Tensor, windows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Stage 1 on the downscaled images, then stage 2 on crops at ``windows`` (B, 3) (cubepose.models.crop);
        None: where stage 1 finds the object."""
        size = self.zoom["locate_size"]
        view = images if images.shape[-1] == size else F.interpolate(images, size=(size, size), mode="area")
        outputs = self.locator(view)
        if windows is not None:
            windows = windows.detach()  # each stage has its own loss; the crop does not steer stage 1
            return {**outputs, **self.cropped_keypoints(images, windows), "windows": windows.float()}
        candidates = self.detected_windows(locator_prediction(outputs))  # (B, C, 3)
        count = candidates.shape[1]
        found = self.cropped_keypoints(images.repeat_interleave(count, dim=0), candidates.flatten(0, 1))
        # of stage 1's candidates, the crop whose keypoints stage 2 finds most clearly (not a look-alike box)
        clarity = found["heatmaps"].flatten(2).amax(dim=-1).mean(dim=-1).reshape(-1, count)
        chosen = clarity.argmax(dim=1) + count * torch.arange(len(images), device=images.device)
        best = {key: value[chosen] for key, value in found.items()}
        return {**outputs, **best, "windows": candidates.flatten(0, 1)[chosen].float()}

    def cropped_keypoints(self, images: torch.Tensor, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage 2's maps on the crops of ``images`` (B, 3, S, S) at ``windows`` (B, 3)."""
        return self.keypoint_net(crop_windows(images, windows.to(images.dtype), self.zoom["crop_size"]))

    def detected_windows(self, maps: LocatorMaps) -> torch.Tensor:
        """The windows (B, C, 3) around the ``zoom/candidates`` strongest centres stage 1 finds, ``zoom/margin``
        times their apparent radius, strongest first."""
        scale = self.image_size / self.zoom["locate_size"]
        centres, _, radii = decode_locator(maps, self.zoom["locate_stride"], scale, self.zoom["candidates"])
        half_sides = self.zoom["margin"] * radii * self.image_size
        return windows_at(centres.flatten(0, 1), half_sides.flatten(), self.image_size).unflatten(0, radii.shape)

    def teacher_windows(self, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training windows (B, 3): the true window around each object, jittered by ``zoom/shift_jitter`` of its
        half side and exp(±``zoom/scale_jitter``) in size, as stage 1 errs."""
        windows = true_windows(targets, self.zoom, self.image_size, self.radius)
        return jittered(windows, self.zoom["shift_jitter"], self.zoom["scale_jitter"])

    def poses(self, outputs: dict[str, torch.Tensor], camera: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """As ``KeypointNet.poses`` for one instance, solved with each crop's camera (``keypoints`` in pixels of
        the input image), plus the plausibility check: ``depth_from_size`` (B,), the distance at which the object
        would look as large as stage 1 saw it, and ``found`` (B,): 0 where the solve cannot be right. That is,
        its depth differs from that by more than ``zoom/depth_tolerance``; its keypoints lie more than
        ``zoom/max_reprojection_error`` crop pixels from its projection (they do not agree on one pose); their
        mean score is below ``zoom/min_confidence``; or stage 1's peak is below ``network/keypoints/min_score``.
        The apparent size is the one the crop frames (stage 1's, for the windows it found).
        A withheld pose keeps its numbers but gets confidence 0."""
        if camera is None:
            raise ConfigError("a zoom-in model needs each image's camera to solve its pose; the data gave none")
        windows, camera = outputs["windows"], camera.to(outputs["windows"])
        cameras = crop_cameras(camera, windows, self.image_size, self.zoom["crop_size"])
        poses = self.keypoint_net.poses(outputs, cameras)
        poses["keypoints"] = to_input_pixels(poses["keypoints"], windows, self.image_size, self.zoom["crop_size"])
        score = self.located_score(outputs["locator_heatmap"], windows)
        radius = windows[:, 2].exp() * self.image_size / (2 * self.zoom["margin"])  # pixels, as the crop frames it
        depth = camera[:, :2].amax(dim=-1) * self.radius / radius
        agrees = (poses["translation"][:, 2] / depth).log().abs() <= math.log1p(self.zoom["depth_tolerance"])
        found = agrees & (score >= self.keypoint_net.min_score) & (poses["confidence"] >= self.zoom["min_confidence"])
        found &= poses["reprojection_error"] <= self.zoom["max_reprojection_error"]
        poses["confidence"] = poses["confidence"] * found
        return {**poses, "depth_from_size": depth.float(), "found": found.float()}

    @staticmethod
    def located_score(heatmap: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """Stage 1's heatmap (B, 1, H, W) at the cell each crop window (B, 3) is centred on (B,): the score of
        the candidate stage 2 kept."""
        grid = heatmap.shape[-1]
        column, row = ((windows[:, :2] + 1) / 2 * grid).long().clamp(0, grid - 1).unbind(-1)
        return heatmap.flatten(1).gather(1, (row * grid + column)[:, None])[:, 0].float()

    def pose_shapes(self) -> dict[str, tuple[int, ...]]:
        """The per-image shape of each output of ``poses``."""
        return {**self.keypoint_net.pose_shapes(), "depth_from_size": (), "found": ()}

    def export_spec(self) -> NoReturn:
        """Refused, naming what works instead: an export would have to hold the crop between the two stages."""
        raise CubeposeError(
            "a zoom-in model (network/type zoom) cannot be exported yet: its two stages need the crop between "
            "them; predict with cubepose predict or PosePredictor, or serve it with cubepose serve"
        )
