"""The pose network: backbone -> head -> translation and unit quaternion, optionally in two stages
(``network/crop``): locate the cube on a downscaled view, then regress its rotation from a crop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cubepose.config import component_check
from cubepose.errors import ConfigError
from cubepose.geometry.rays import ray_rotations
from cubepose.geometry.rotations import canonical_sign
from cubepose.models.backbones import BACKBONES, load_pretrained
from cubepose.models.crop import crop_windows, to_camera_frame
from cubepose.models.export_spec import ExportedOutputs, ExportSpec
from cubepose.models.heads import HEADS
from cubepose.models.rotations import ROTATIONS

EXPORTED_OUTPUTS = {"translation": "(N, 3) metres, camera frame", "quaternion": "(N, 4) x, y, z, w with w >= 0"}


def _feature_shape(backbone: nn.Module, image_size: int) -> tuple[int, int, int]:
    """(C, H, W) of ``backbone``'s output for square images of ``image_size``."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        shape = backbone(torch.zeros(1, 3, image_size, image_size)).shape[1:]
    backbone.train(was_training)
    return tuple(shape)


@component_check
def check_network(config: dict, errors: list[str]) -> None:
    """The ``network`` tree's components exist, and the two-stage crop fits the losses: it needs the
    window loss, which in turn needs the crop."""
    network, crop = config["network"], config["network"]["crop"]
    named = [
        ("network/backbone", network["backbone"], BACKBONES),
        ("network/head", network["head"], HEADS),
        ("network/rotation", network["rotation"], ROTATIONS),
        ("network/crop/backbone", crop["backbone"], BACKBONES),
    ]
    for path, name, registry in named:
        if name not in registry:
            errors.append(f"{path}: unknown {registry.kind} {name!r}; known: {', '.join(registry.names())}")
    has_window_loss = "window" in config["losses"]
    if crop["active"]:
        if not has_window_loss:
            errors.append("network/crop/active needs losses/window (e.g. {type: mse, weight: 1.0}) to locate the cube")
        if crop["locate_size"] > network["image_size"]:
            errors.append(
                f"network/crop/locate_size: {crop['locate_size']} exceeds network/image_size "
                f"{network['image_size']}; the first stage sees a downscaled view"
            )
    elif has_window_loss:
        errors.append("losses/window: only the two-stage model predicts a window; set network/crop/active: true")


class PoseNet(nn.Module):
    """Predicts ``translation`` (B, 3) and ``quaternion`` (B, 4), regressed in the ``network/rotation``
    representation and returned as a unit quaternion (for a symmetric object, one of its equivalent poses).

    With ``network/crop/active`` the first stage sees the input resized to ``crop/locate_size``
    and predicts the translation and the cube's ``window`` (see cubepose.models.crop); the second
    stage sees a ``crop/size`` crop of the full-resolution input at that window and regresses the
    orientation relative to the viewing ray, which the stage-1 translation turns into the camera frame.
    """

    takes_camera = False  # poses are regressed in the training camera's frame

    def __init__(self, config: dict) -> None:
        """The network of a validated ``config`` (cubepose.config.validate_config, run where the run starts)."""
        super().__init__()
        network = config["network"]
        if network["type"] != "regression":
            raise ConfigError(
                f"network/type is {network['type']!r}, which PoseNet does not build; build models with "
                "cubepose.models.pose_network (edflow: model: cubepose.models.pose_network)"
            )
        self.image_size = network["image_size"]
        self.rotation = ROTATIONS.get(network["rotation"], "network/rotation")
        crop = network["crop"]
        self.crop = dict(crop) if crop["active"] else None
        make_head = HEADS.get(network["head"], "network/head")
        outputs = {"translation": 3}
        if self.crop is not None:
            outputs["window"] = 3
        else:
            outputs["quaternion"] = self.rotation.size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["seed"])
            self.backbone = BACKBONES.get(network["backbone"], "network/backbone")()
            self.head = make_head(_feature_shape(self.backbone, self.input_size), outputs)
            if self.crop is not None:
                self.crop_backbone = BACKBONES.get(crop["backbone"], "network/crop/backbone")()
                shape = _feature_shape(self.crop_backbone, crop["size"])
                self.crop_head = make_head(shape, {"quaternion": self.rotation.size})
        if network["pretrained"]:
            load_pretrained(self.backbone, network["pretrained"], network["backbone"])

    @property
    def input_size(self) -> int:
        """Side of the images the first (or only) backbone sees."""
        return self.crop["locate_size"] if self.crop is not None else self.image_size

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``translation`` (B, 3) and unit ``quaternion`` (B, 4) x, y, z, w (plus the two-stage ``window``).

        Outside training the quaternion always has w >= 0, set here once so that evaluation,
        ``PosePredictor`` and TorchScript / ONNX exports all return the data's convention. While
        training, a single-stage model's regressed quaternion keeps its raw sign, so Unity's ``mse``
        orientation loss keeps penalising -q (``sign_invariant`` and ``geodesic`` do not); the 6D
        representation and the two-stage model return w >= 0 in training too.
        """
        if self.crop is None:
            out = self.head(self.backbone(images))
            quaternion = self.rotation.to_quaternion(out["quaternion"])
            out["quaternion"] = quaternion if self.training else canonical_sign(quaternion)
            return out
        view = images
        if images.shape[-1] != self.input_size:
            view = F.interpolate(images, size=(self.input_size, self.input_size), mode="area")
        out = self.head(self.backbone(view))
        # The crop follows the first stage's estimate without steering it: each stage has its own loss.
        crops = crop_windows(images, out["window"].detach(), self.crop["size"])
        along_ray = self.rotation.to_quaternion(self.crop_head(self.crop_backbone(crops))["quaternion"])
        out["quaternion"] = canonical_sign(to_camera_frame(ray_rotations(out["translation"].detach()), along_ray))
        return out

    def poses(self, outputs: dict[str, torch.Tensor], camera: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The pose in the outputs: a regression model predicts it directly, in its training camera's frame."""
        return {"translation": outputs["translation"], "quaternion": outputs["quaternion"]}

    def pose_shapes(self) -> dict[str, tuple[int, ...]]:
        """The per-image shape of each output of ``poses``."""
        return {"translation": (3,), "quaternion": (4,)}

    def export_spec(self) -> ExportSpec:
        """What an export traces (``exported``) and declares: the pose, in the training camera's frame."""
        return ExportSpec(ExportedOutputs(self), dict(EXPORTED_OUTPUTS))

    def exported(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What an export computes (``export_spec``): translation and quaternion."""
        outputs = self(images)
        return outputs["translation"], outputs["quaternion"]
