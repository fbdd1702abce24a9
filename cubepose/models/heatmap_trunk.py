"""The fully convolutional trunk of the heatmap networks: a small encoder to stride 16 and a top-down decoder
with lateral connections back to the output stride (a feature pyramid), so a small object is found anywhere in
the image and placed to a fraction of a cell. The keypoint network and both stages of the zoom-in network put
their 1x1 heads on it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cubepose.models.backbones import SMALL_CNN_WIDTHS, conv_bn, small_cnn_stages

ENCODER_WIDTHS = SMALL_CNN_WIDTHS  # the encoder is small_cnn's stages, at strides 2, 4, 8, 16
DECODER_WIDTH = 64
OUTPUT_STRIDES = (2, 4, 8)  # the strides the decoder can stop at


class HeatmapTrunk(nn.Module):
    """Features (B, DECODER_WIDTH, H / stride, W / stride) of images (B, 3, H, W); a subclass adds its heads.

    The modules are built in a fixed order (encoder, lateral, smooth, head) under the caller's seed, and their
    state-dict keys (``encoder.<stage>.<layer>``, ...) are those the keypoint network's checkpoints hold."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.output_level = OUTPUT_STRIDES.index(stride)  # the encoder stage (stride 2, 4, ...) it decodes to
        self.encoder = small_cnn_stages()
        used = range(self.output_level, len(ENCODER_WIDTHS))
        self.lateral = nn.ModuleList(nn.Conv2d(ENCODER_WIDTHS[level], DECODER_WIDTH, 1) for level in used)
        self.smooth = nn.ModuleList(nn.Sequential(*conv_bn(DECODER_WIDTH, DECODER_WIDTH, stride=1)) for _ in used[:-1])
        self.head = nn.Sequential(*conv_bn(DECODER_WIDTH, DECODER_WIDTH, stride=1))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The decoded features at the output stride: encoder, then top-down (upsample, add the finer stage,
        smooth), then the shared head convolution."""
        stages = []
        x = images
        for stage in self.encoder:
            x = stage(x)
            stages.append(x)
        used = stages[self.output_level :]
        x = self.lateral[-1](used[-1])
        for level in range(len(used) - 2, -1, -1):
            x = F.interpolate(x, size=used[level].shape[-2:], mode="nearest") + self.lateral[level](used[level])
            x = self.smooth[level](x)
        return self.head(x)
