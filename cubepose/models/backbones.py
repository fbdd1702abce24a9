"""Image backbones in plain torch (no torchvision), found by name through ``BACKBONES``.

A backbone maps images (B, 3, S, S) to a feature map; ``PoseNet`` flattens it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from pathlib import Path

import torch
from torch import nn

from cubepose.errors import ConfigError
from cubepose.registry import Registry

BACKBONES: Registry[Callable[[], nn.Module]] = Registry("backbone")

# torchvision's VGG16 layout ("D"); the module indices match torchvision's
# ``features.N`` names, so its ImageNet state dict loads without renaming.
VGG16_LAYERS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


@BACKBONES.register("vgg16")
def vgg16() -> nn.Module:
    """VGG16 convolutional features, as Unity's pose-estimation model uses (stride 32)."""
    layers: list[nn.Module] = []
    channels = 3
    for spec in VGG16_LAYERS:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, spec, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = spec
    return nn.Sequential(*layers)


def conv_bn(inputs: int, outputs: int, stride: int) -> list[nn.Module]:
    """3x3 convolution, batch norm, ReLU: the unit of the small backbones and the keypoint network."""
    return [nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(True)]


SMALL_CNN_WIDTHS = (32, 64, 128, 128)


def _small_cnn_stages(channels: int) -> list[list[nn.Module]]:
    """small_cnn's four stages from ``channels`` inputs, each a strided and a plain ``conv_bn``."""
    stages = []
    for width in SMALL_CNN_WIDTHS:
        stages.append(conv_bn(channels, width, stride=2) + conv_bn(width, width, stride=1))
        channels = width
    return stages


@BACKBONES.register("small_cnn")
def small_cnn() -> nn.Module:
    """Four conv stages of stride 2 (stride 16: a 4x4 map at 64 px keeps where the cube is)
    with batch norm; trains in minutes on 2 CPU cores."""
    return nn.Sequential(*chain.from_iterable(_small_cnn_stages(3)))


def small_cnn_stages() -> nn.ModuleList:
    """small_cnn's stages (strides 2, 4, 8, 16; widths ``SMALL_CNN_WIDTHS``) one module each, for a network that
    reads every stage's features (the keypoint network's encoder); the same layers, built in the same order."""
    return nn.ModuleList(nn.Sequential(*stage) for stage in _small_cnn_stages(3))


HIRES_STEM_WIDTH = 16


@BACKBONES.register("small_cnn_hires")
def small_cnn_hires() -> nn.Module:
    """small_cnn behind one strided 16-channel conv: twice the input size (128 px: the cube's
    edges at twice the resolution) for about 15% more compute than small_cnn at half the size."""
    stem = conv_bn(3, HIRES_STEM_WIDTH, stride=2)  # built first: the seed gives the same weights as before
    return nn.Sequential(*stem, *chain.from_iterable(_small_cnn_stages(HIRES_STEM_WIDTH)))


class BasicBlock(nn.Module):
    """ResNet's two-conv residual block, with torchvision's parameter names."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.downsample = None
        if stride != 1 or inputs != outputs:
            self.downsample = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):
    """ResNet-18/34 features (stride 32, 512 channels); names match torchvision's resnet, so its
    ImageNet state dict loads as is (its ``fc.*`` classifier is ignored)."""

    def __init__(self, blocks: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for index, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True), start=1):
            stride = 1 if index == 1 else 2
            layer = [BasicBlock(channels, width, stride)] + [BasicBlock(width, width, 1) for _ in range(count - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layer))
            channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@BACKBONES.register("resnet18")
def resnet18() -> nn.Module:
    """ResNet-18 (He et al. 2016) features."""
    return ResNet((2, 2, 2, 2))


@BACKBONES.register("resnet34")
def resnet34() -> nn.Module:
    """ResNet-34 features."""
    return ResNet((3, 4, 6, 3))


def load_pretrained(backbone: nn.Module, path: str, name: str) -> None:
    """Load local weights into ``backbone``: a backbone state dict, or a whole torchvision VGG16
    (its ``features.*`` entries) or ResNet (without ``fc.*``) state dict. Mismatches name the file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"network/pretrained: no file at {file}; give the path of a local .pth state dict or null")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for non-checkpoint files
        raise ConfigError(f"network/pretrained: {file} is not a torch state dict ({err})") from err
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"network/pretrained: {file} holds a {type(state).__name__}, not a state dict")
    if any(k.startswith("features.") for k in state):  # a whole torchvision VGG
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # a whole torchvision ResNet
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"network/pretrained: {file} does not fit backbone {name!r}: {err}") from err
