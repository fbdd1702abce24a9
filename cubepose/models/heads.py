"""Pose heads, found by name through ``HEADS``: backbone feature map -> named outputs.

A head is built as ``head(feature_shape, outputs)`` with the backbone's (C, H, W) at the
configured image size and the outputs to predict, e.g. ``{"translation": 3, "quaternion": 4}``;
its forward returns one (B, n) tensor per output.
"""

from __future__ import annotations

from torch import nn

from cubepose.registry import Registry

HEADS: Registry[type[nn.Module]] = Registry("head")


def mlp_branch(inputs: int, outputs: int) -> nn.Sequential:
    """Unity's branch: Linear-ReLU-Linear-ReLU-Linear (256, 64 hidden units)."""
    return nn.Sequential(
        nn.Linear(inputs, 256), nn.ReLU(inplace=True), nn.Linear(256, 64), nn.ReLU(inplace=True), nn.Linear(64, outputs)
    )


@HEADS.register("unity_mlp")
class UnityMLPHead(nn.Module):
    """Unity's head: the flattened feature map feeds one MLP branch per output."""

    def __init__(self, feature_shape: tuple[int, int, int], outputs: dict[str, int]) -> None:
        super().__init__()
        channels, height, width = feature_shape
        self.branches = nn.ModuleDict({name: mlp_branch(channels * height * width, n) for name, n in outputs.items()})

    def forward(self, features):
        flat = features.flatten(1)
        return {name: branch(flat) for name, branch in self.branches.items()}


POOLED_CHANNELS = 128
POOLED_GRID = 4


@HEADS.register("pooled")
class PooledHead(nn.Module):
    """A 1x1 conv to 128 channels, average-pooled to a 4x4 grid (keeping coarse position, which
    translation needs), then one MLP branch per output: far fewer weights than flattening a
    large map (VGG16 at 224 px: 2,048 inputs instead of 25,088)."""

    def __init__(self, feature_shape: tuple[int, int, int], outputs: dict[str, int]) -> None:
        super().__init__()
        grid = min(POOLED_GRID, feature_shape[1], feature_shape[2])
        self.reduce = nn.Sequential(
            nn.Conv2d(feature_shape[0], POOLED_CHANNELS, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(grid)
        )
        self.branches = nn.ModuleDict(
            {name: mlp_branch(POOLED_CHANNELS * grid * grid, n) for name, n in outputs.items()}
        )

    def forward(self, features):
        flat = self.reduce(features).flatten(1)
        return {name: branch(flat) for name, branch in self.branches.items()}
