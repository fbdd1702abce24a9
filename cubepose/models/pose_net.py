"""The pose network: backbone -> head -> translation and unit quaternion."""

from __future__ import annotations

import torch
from torch import nn

from cubepose.config import validate_config
from cubepose.models.backbones import BACKBONES, load_pretrained
from cubepose.models.heads import HEADS
from cubepose.models.rotations import ROTATIONS


class PoseNet(nn.Module):
    """Predicts ``translation`` (B, 3) and, unless ``network/symmetric``, ``quaternion`` (B, 4),
    regressed in the ``network/rotation`` representation and returned as a unit quaternion."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        validate_config(config)
        network = config["network"]
        self.symmetric = network["symmetric"]
        self.image_size = network["image_size"]
        self.rotation = ROTATIONS.get(network["rotation"], "network/rotation")
        outputs = {"translation": 3} if self.symmetric else {"translation": 3, "quaternion": self.rotation.size}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["seed"])
            self.backbone = BACKBONES.get(network["backbone"], "network/backbone")()
            shape = self.feature_shape(self.image_size)
            self.head = HEADS.get(network["head"], "network/head")(shape, outputs)
        if network["pretrained"]:
            load_pretrained(self.backbone, network["pretrained"], network["backbone"])

    @torch.no_grad()
    def feature_shape(self, image_size: int) -> tuple[int, int, int]:
        """(C, H, W) of the backbone's output for square images of ``image_size``."""
        was_training = self.backbone.training
        self.backbone.eval()
        shape = self.backbone(torch.zeros(1, 3, image_size, image_size)).shape[1:]
        self.backbone.train(was_training)
        return tuple(shape)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.head(self.backbone(images))
        if "quaternion" in out:
            out["quaternion"] = self.rotation.to_quaternion(out["quaternion"])
        return out
