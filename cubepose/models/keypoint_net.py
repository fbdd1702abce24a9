"""The keypoint network (``network/type: keypoints``): where the object's centre and the 8 corners of its box
appear, as heatmaps and sub-cell offsets at ``network/keypoints/stride``; the pose follows from a PnP solve
with each image's camera (NVIDIA DOPE's recipe, with CenterNet's offsets).

Fully convolutional (cubepose.models.heatmap_trunk), so a small object is found anywhere in the image and its
corners are placed to a fraction of a pixel. Since the pose comes from the camera and not from the weights, one
model serves any camera.
"""

from __future__ import annotations

import torch
from torch import nn

from cubepose.errors import ConfigError
from cubepose.geometry.object import Box
from cubepose.models.codecs.heatmaps import decode_instances, decode_keypoints
from cubepose.models.codecs.keypoints import KEYPOINTS, assigned_orientation, object_keypoints, solve_pnp
from cubepose.models.export_spec import ExportedOutputs, ExportSpec
from cubepose.models.heatmap_trunk import DECODER_WIDTH, HeatmapTrunk
from cubepose.models.keypoint_export import keypoint_contract, keypoint_outputs


class KeypointNet(HeatmapTrunk):
    """Predicts ``heatmaps`` (B, 9, H, W) and ``offsets`` (B, 9, 2, H, W) of the object's centre and its 8 box
    corners (``Box.corners`` order) on the input's grid at ``network/keypoints/stride``; ``poses`` turns them
    into translation, quaternion and a confidence with the images' cameras."""

    takes_camera = True  # poses() solves with the images' camera

    def __init__(self, config: dict) -> None:
        """The network of a validated ``config`` (cubepose.config.validate_config, run where the run starts)."""
        network = config["network"]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["seed"])
            super().__init__(network["keypoints"]["stride"])
            self.heatmap_head = nn.Conv2d(DECODER_WIDTH, KEYPOINTS, 1)
            self.offset_head = nn.Conv2d(DECODER_WIDTH, 2 * KEYPOINTS, 1)
            box = Box.from_config(config)
            # assign_by_shape: corners numbered by place, under the bare box's symmetries; a head names which one
            self.shape_group = box.shape_symmetries if network["keypoints"]["assign_by_shape"] else None
            if self.shape_group is not None:  # logits per cell; read where the centre is
                self.symmetry_head = nn.Conv2d(DECODER_WIDTH, len(self.shape_group), 1)
            self.max_instances = config["data"]["max_instances"]  # above 1: every centre peak is an instance
            if self.max_instances > 1:  # from each centre to its corners: which corners are whose
                self.displacement_head = nn.Conv2d(DECODER_WIDTH, 2 * (KEYPOINTS - 1), 1)
        self.image_size = network["image_size"]
        self.min_score = network["keypoints"]["min_score"]
        points = torch.as_tensor(object_keypoints(box), dtype=torch.float32)
        self.register_buffer("object_points", points, persistent=False)
        if self.shape_group is not None:
            self.register_buffer("shape_symmetries", torch.tensor(self.shape_group, dtype=torch.float32), False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``heatmaps`` (B, 9, H, W) and ``offsets`` (B, 9, 2, H, W) in cells, H = W = image_size / stride; with
        ``assign_by_shape`` also ``symmetry_logits`` (B, G, H, W) over the bare box's G symmetries, and with
        several instances ``displacements`` (B, 16, H, W) from each cell to the corners of the centre there."""
        x = self.features(images)
        outputs = {"heatmaps": self.heatmap_head(x), "offsets": self.offset_head(x).unflatten(1, (KEYPOINTS, 2))}
        if self.shape_group is not None:
            outputs["symmetry_logits"] = self.symmetry_head(x)
        if self.max_instances > 1:
            outputs["displacements"] = self.displacement_head(x)
        return outputs

    def keypoints(self, outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoded keypoints (B, 9, 2) in input pixels and their scores (B, 9) (models.codecs.heatmaps); with
        several instances (B, P, 9, 2) and (B, P, 9), P = ``data/max_instances``, strongest centre first."""
        if self.max_instances == 1:
            return decode_keypoints(outputs["heatmaps"], outputs["offsets"], self.stride)
        heatmaps, offsets, displacements = outputs["heatmaps"], outputs["offsets"], outputs["displacements"]
        return decode_instances(heatmaps, offsets, displacements, self.stride, self.max_instances)

    def symmetry(self, outputs: dict[str, torch.Tensor], centres: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) the index of the shape symmetry the head names at the centre's peak cell (``assign_by_shape``);
        given the decoded ``centres`` (B, P, 2) in input pixels, (B, P): one per instance, at its centre's cell."""
        logits = outputs["symmetry_logits"].flatten(2)  # (B, G, cells)
        if centres is None:
            cell = outputs["heatmaps"][:, 0].flatten(1).argmax(dim=1)[:, None]  # (B, 1) cell index
        else:
            columns = logits.shape[-1] // outputs["symmetry_logits"].shape[-2]
            grid = (centres / self.stride).long().clamp(0, columns - 1)
            cell = grid[..., 1] * columns + grid[..., 0]  # (B, P)
        named = logits.gather(2, cell[:, None].expand(-1, logits.shape[1], -1)).argmax(dim=1)  # (B, P)
        return named[:, 0] if centres is None else named

    def poses(self, outputs: dict[str, torch.Tensor], camera: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``translation`` (B, 3), ``quaternion`` (B, 4) with w >= 0, ``confidence`` (B,), ``reprojection_error``
        (B,), ``keypoints`` (B, 9, 2) and their ``scores`` (B, 9) from the outputs and the cameras (B, 4) fx, fy,
        cx, cy in pixels of the network input; with several instances each has a slot axis P after B, strongest
        centre first, and ``found`` (B, P): 1 where the slot holds an instance (its centre's peak at least
        ``network/keypoints/min_score``), else 0.

        The keypoints are weighed by their scores in the solve. ``confidence`` is the mean score in [0, 1];
        ``reprojection_error`` (pixels) is how far the keypoints lie from the solved pose's projection.
        """
        if camera is None:
            raise ConfigError("a keypoint model needs each image's camera to solve its pose; the data gave none")
        pixels, scores = self.keypoints(outputs)
        weights = scores.clamp(0, 1)
        batch = pixels.shape[0]
        slots = 1 if self.max_instances == 1 else self.max_instances
        flat_pixels, flat_weights = pixels.reshape(batch * slots, -1, 2), weights.reshape(batch * slots, -1)
        flat_camera = camera.to(pixels).repeat_interleave(slots, dim=0)
        translation, quaternion, error = solve_pnp(flat_pixels, self.object_points, flat_camera, flat_weights)
        if self.shape_group is not None:  # the solve found the corners' numbering; the head names the faces'
            index = self.symmetry(outputs, None if slots == 1 else pixels[:, :, 0])
            quaternion = assigned_orientation(quaternion, index.reshape(-1), self.shape_symmetries)
        shape = (batch,) if slots == 1 else (batch, slots)
        poses = {
            "translation": translation.float().reshape(*shape, 3),
            "quaternion": quaternion.float().reshape(*shape, 4),
            "confidence": weights.mean(dim=-1),
            "reprojection_error": error.float().reshape(shape),
            "keypoints": pixels,
            "scores": scores,
        }
        if slots > 1:
            poses["found"] = (scores[..., 0] >= self.min_score).float()
        return poses

    def pose_shapes(self) -> dict[str, tuple[int, ...]]:
        """The per-image shape of each output of ``poses`` (with several instances, a slot axis P first)."""
        slots = () if self.max_instances == 1 else (self.max_instances,)
        shapes = {
            "translation": (*slots, 3),
            "quaternion": (*slots, 4),
            "confidence": slots,
            "reprojection_error": slots,
            "keypoints": (*slots, KEYPOINTS, 2),
            "scores": (*slots, KEYPOINTS),
        }
        return shapes if not slots else {**shapes, "found": slots}

    def export_spec(self) -> ExportSpec:
        """What an export traces (``exported``) and declares: its outputs and how they become a pose with the
        user's camera (cubepose.models.keypoint_export)."""
        return ExportSpec(
            ExportedOutputs(self),
            keypoint_outputs(self.max_instances, self.shape_group is not None),
            keypoint_contract(self.object_points, self.shape_group, self.max_instances, self.min_score),
        )

    def exported(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What an export computes (``export_spec``): the network, the keypoint decoding and, with
        ``assign_by_shape``, the symmetry index; the PnP solve with the user's camera is left to the caller."""
        outputs = self(images)
        pixels, scores = self.keypoints(outputs)
        if self.shape_group is None:
            return pixels, scores
        return pixels, scores, self.symmetry(outputs, None if self.max_instances == 1 else pixels[:, :, 0])
