"""The pose network: backbone -> flattened features -> translation and orientation heads."""

from __future__ import annotations

import torch
from torch import nn

from cubepose.config import validate_config
from cubepose.models.backbones import BACKBONES, load_pretrained

IDENTITY_QUATERNION = (0.0, 0.0, 0.0, 1.0)


def normalize_quaternions(q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Unit quaternions along the last axis; a (near) zero vector maps to the identity (0, 0, 0, 1)."""
    norm = q.norm(dim=-1, keepdim=True)
    unit = q / norm.clamp_min(eps)
    identity = q.new_tensor(IDENTITY_QUATERNION).expand_as(q)
    return torch.where(norm > eps, unit, identity)


class QuaternionNormalization(nn.Module):
    """The orientation head's last layer: project onto unit quaternions."""

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return normalize_quaternions(q)


def mlp_head(inputs: int, outputs: int) -> nn.Sequential:
    """Unity's branch: Linear-ReLU-Linear-ReLU-Linear (256, 64 hidden units)."""
    return nn.Sequential(
        nn.Linear(inputs, 256), nn.ReLU(inplace=True), nn.Linear(256, 64), nn.ReLU(inplace=True), nn.Linear(64, outputs)
    )


class PoseNet(nn.Module):
    """Predicts ``translation`` (B, 3) and, unless ``network/symmetric``, ``quaternion`` (B, 4)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        validate_config(config)
        network = config["network"]
        self.symmetric = network["symmetric"]
        self.image_size = network["image_size"]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["seed"])
            self.backbone = BACKBONES.get(network["backbone"], "network/backbone")()
            features = self.feature_size(self.image_size)
            self.translation_head = mlp_head(features, 3)
            self.orientation_head = (
                None if self.symmetric else nn.Sequential(mlp_head(features, 4), QuaternionNormalization())
            )
        if network["pretrained"]:
            load_pretrained(self.backbone, network["pretrained"], network["backbone"])

    @torch.no_grad()
    def feature_size(self, image_size: int) -> int:
        """Length of the flattened backbone output for square images of ``image_size``."""
        was_training = self.backbone.training
        self.backbone.eval()
        size = self.backbone(torch.zeros(1, 3, image_size, image_size)).numel()
        self.backbone.train(was_training)
        return size

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = torch.flatten(self.backbone(images), 1)
        out = {"translation": self.translation_head(features)}
        if self.orientation_head is not None:
            out["quaternion"] = self.orientation_head(features)
        return out
