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

import torch
import torch.nn.functional as F
from torch import nn

from cubepose.errors import ConfigError
from cubepose.geometry.object import Box
from cubepose.models.codecs.zoom import (
    LocatorMaps,
    apparent_centre_and_radius,
    decode_locator,
    jittered,
    locator_prediction,
    true_windows,
)
from cubepose.models.crop import crop_cameras, crop_windows, to_input_pixels, windows_at
from cubepose.models.export_spec import ExportedOutputs, ExportSpec
from cubepose.models.heatmap_trunk import DECODER_WIDTH, HeatmapTrunk
from cubepose.models.keypoint_export import keypoint_contract, zoom_contract, zoom_outputs
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
        crop_config["data"]["max_instances"] = 1  # a crop holds the one instance it is centred on
        crop_config["seed"] = config["seed"] + STAGE_2_SEED_OFFSET
        self.keypoint_net = KeypointNet(crop_config)
        self.max_instances = config["data"]["max_instances"]  # above 1: a crop at each of stage 1's strongest centres

    def forward(self, images: torch.Tensor, windows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Stage 1 on the downscaled images, then stage 2 on crops at ``windows`` (B, 3) (cubepose.models.crop);
        None: where stage 1 finds the object (``instance_crops`` for several instances)."""
        size = self.zoom["locate_size"]
        view = images if images.shape[-1] == size else F.interpolate(images, size=(size, size), mode="area")
        outputs = self.locator(view)
        if windows is not None:
            windows = windows.detach()  # each stage has its own loss; the crop does not steer stage 1
            return {**outputs, **self.cropped_keypoints(images, windows), "windows": windows.float()}
        if self.max_instances > 1:
            return {**outputs, **self.instance_crops(images, locator_prediction(outputs))}
        candidates = self.detected_windows(locator_prediction(outputs))  # (B, C, 3)
        count = candidates.shape[1]
        found = self.cropped_keypoints(images.repeat_interleave(count, dim=0), candidates.flatten(0, 1))
        found["windows"] = candidates.flatten(0, 1).float()
        # of stage 1's candidates, the crop whose keypoints stage 2 finds most clearly (not a look-alike box)
        clarity = found["heatmaps"].flatten(2).amax(dim=-1).mean(dim=-1).unflatten(0, (-1, count))
        chosen = clarity.argmax(dim=1)  # (B,); selected by gathering, so a traced export keeps its batch axis free
        return {**outputs, **{key: _pick(value, chosen, count) for key, value in found.items()}}

    def instance_crops(self, images: torch.Tensor, maps: LocatorMaps) -> dict[str, torch.Tensor]:
        """Several instances: stage 2's maps and windows on a crop at each of stage 1's ``data/max_instances``
        strongest centres, with a slot axis P after B under ``instance_<name>``; the strongest one's also under
        the plain names, which the evaluation's losses compare with the instance the crop is centred on."""
        windows = self.detected_windows(maps, self.max_instances)  # (B, P, 3)
        slots = windows.shape[1]
        found = self.cropped_keypoints(images.repeat_interleave(slots, dim=0), windows.flatten(0, 1))
        found = {key: value.unflatten(0, (-1, slots)) for key, value in found.items()}
        found["windows"] = windows.float()
        return {**{key: value[:, 0] for key, value in found.items()}, **{f"instance_{k}": v for k, v in found.items()}}

    def cropped_keypoints(self, images: torch.Tensor, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage 2's maps on the crops of ``images`` (B, 3, S, S) at ``windows`` (B, 3)."""
        return self.keypoint_net(crop_windows(images, windows.to(images.dtype), self.zoom["crop_size"]))

    def follow(
        self,
        images: torch.Tensor,
        translations: torch.Tensor,
        camera: torch.Tensor,
        framing_depths: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Stage 2 alone, for tracking: the poses (B) ``poses`` gives, solved from crops of ``images`` (B, 3, H, W)
        centred where the objects are expected, ``translations`` (B, 3) in the frame of ``camera`` (B, 4 or 12;
        pixels of the S x S input), and framed as in training (``zoom/margin`` apparent radii) for an object at
        ``framing_depths`` (B,) metres (default: the translations' depths); stage 1 does not run, so its score is
        not checked. The images may be the frames before their resize to S x S: a window is a share of the image
        either way, so the crop is the same (sampled once, from the sharper original)."""
        translations = translations.to(camera)
        depths = translations[:, 2] if framing_depths is None else framing_depths.to(camera)
        centre, _ = apparent_centre_and_radius(translations, camera, self.radius)
        apparent = camera[:, :2].amax(dim=-1) * self.radius / depths
        windows = windows_at(centre, self.zoom["margin"] * apparent, self.image_size).to(images.dtype)
        outputs = {**self.cropped_keypoints(images, windows), "windows": windows}
        return self._solved({key: value.float() for key, value in outputs.items()}, camera)

    def detected_windows(self, maps: LocatorMaps, count: int | None = None) -> torch.Tensor:
        """The windows (B, C, 3) around the ``count`` (default ``zoom/candidates``) strongest centres stage 1 finds,
        ``zoom/margin`` times their apparent radius, strongest first."""
        scale = self.image_size / self.zoom["locate_size"]
        count = count or self.zoom["candidates"]
        centres, _, radii = decode_locator(maps, self.zoom["locate_stride"], scale, count)
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
        The apparent size is the one the crop frames (stage 1's, for the windows it found; for ``follow``'s, the
        previous pose's, and no stage 1 score is checked).
        A withheld pose keeps its numbers but gets confidence 0. With several instances every output has a slot
        axis P after B, stage 1's strongest centre first, and ``found`` marks the instances (a training step's
        outputs, one crop per image at the teacher's window, fill the first slot)."""
        if camera is None:
            raise ConfigError("a zoom-in model needs each image's camera to solve its pose; the data gave none")
        if self.max_instances == 1:
            return self._solved(outputs, camera)
        slots = self.max_instances
        if "instance_windows" not in outputs:  # a training step's: one crop per image, at the teacher's window
            poses = {
                key: value[:, None].repeat_interleave(slots, dim=1)
                for key, value in self._solved(outputs, camera).items()
            }
            poses["found"][:, 1:] = 0
            return poses
        poses = self._solved(self._flat_instances(outputs), camera.repeat_interleave(slots, dim=0))
        return {key: value.unflatten(0, (-1, slots)) for key, value in poses.items()}

    def _flat_instances(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The ``instance_crops`` outputs as if each slot were an image of its own (B * P, ...)."""
        prefix = "instance_"
        flat = {
            key.removeprefix(prefix): value.flatten(0, 1) for key, value in outputs.items() if key.startswith(prefix)
        }
        return {**flat, "locator_heatmap": outputs["locator_heatmap"].repeat_interleave(self.max_instances, dim=0)}

    def _solved(self, outputs: dict[str, torch.Tensor], camera: torch.Tensor) -> dict[str, torch.Tensor]:
        """``poses`` of one crop per image (B)."""
        windows, camera = outputs["windows"], camera.to(outputs["windows"])
        cameras = crop_cameras(camera, windows, self.image_size, self.zoom["crop_size"])
        poses = self.keypoint_net.poses(outputs, cameras)
        poses["keypoints"] = to_input_pixels(poses["keypoints"], windows, self.image_size, self.zoom["crop_size"])
        followed = "locator_heatmap" not in outputs  # a tracking step: stage 1 did not run, nothing to score
        score = torch.ones_like(windows[:, 0]) if followed else self.located_score(outputs["locator_heatmap"], windows)
        depth = camera[:, :2].amax(dim=-1) * self.radius / self.apparent_radius(windows)
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
        """The per-image shape of each output of ``poses`` (with several instances, a slot axis P first)."""
        slots = () if self.max_instances == 1 else (self.max_instances,)
        shapes = {**self.keypoint_net.pose_shapes(), "depth_from_size": (), "found": ()}
        return {key: (*slots, *shape) for key, shape in shapes.items()}

    def export_spec(self) -> ExportSpec:
        """What an export traces (``exported``: both stages and the crop between them, one graph) and declares:
        the keypoint contract in the input's pixels, plus the plausibility check (cubepose.models.keypoint_export)."""
        net = self.keypoint_net
        by_shape = net.shape_group is not None
        return ExportSpec(
            ExportedOutputs(self),
            zoom_outputs(by_shape, self.max_instances),
            {
                **keypoint_contract(net.object_points, net.shape_group, self.max_instances, net.min_score),
                **zoom_contract(self.zoom, self.radius, net.min_score, self.max_instances),
            },
        )

    def exported(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What an export computes: stage 1, the crop where it finds the object, stage 2 and the keypoint decoding,
        with the keypoints in the input's pixels; then the apparent ``radius`` (N,) in input pixels and stage 1's
        ``located`` score (N,) that the plausibility check reads. The PnP solve is left to the caller."""
        outputs = self(images)
        if self.max_instances > 1:
            outputs = self._flat_instances(outputs)
        windows = outputs["windows"]
        pixels, scores = self.keypoint_net.keypoints(outputs)
        keypoints = to_input_pixels(pixels, windows, self.image_size, self.zoom["crop_size"])
        radius = self.apparent_radius(windows)
        located = self.located_score(outputs["locator_heatmap"], windows)
        named = () if self.keypoint_net.shape_group is None else (self.keypoint_net.symmetry(outputs),)
        results = (keypoints, scores, *named, radius, located)
        if self.max_instances > 1:  # the slot axis back after the batch's
            results = tuple(value.unflatten(0, (-1, self.max_instances)) for value in results)
        return results

    def apparent_radius(self, windows: torch.Tensor) -> torch.Tensor:
        """The object's apparent radius (B,) in input pixels that crop ``windows`` (B, 3) frame."""
        return windows[:, 2].exp() * self.image_size / (2 * self.zoom["margin"])


def _pick(values: torch.Tensor, chosen: torch.Tensor, count: int) -> torch.Tensor:
    """Of ``values`` (B * count, ...) in groups of ``count`` per image, the ``chosen`` (B,) one of each group."""
    grouped = values.unflatten(0, (-1, count))
    index = chosen.reshape(-1, *[1] * (grouped.dim() - 1)).expand(-1, 1, *grouped.shape[2:])
    return grouped.gather(1, index)[:, 0]
