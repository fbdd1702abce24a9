"""Photometric augmentation of a training batch on its device: what a real camera changes, never the geometry.

Each image draws its own brightness, contrast, saturation, white balance, Gaussian blur and sensor noise
(``augmentation`` in the config); pixels move but none changes place, so the labels and the camera stay
exact. Batched tensor arithmetic plus kornia's batched Gaussian blur: no per-image loop. Only training
batches are augmented; evaluation and prediction see images as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from kornia.filters import gaussian_blur2d

# ITU-R BT.601 luma weights: the grey a saturation change moves each pixel towards
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class PhotometricAugmentation:
    """The ranges an image's changes are drawn from (0 turns one off); ``probability``: share of images changed."""

    probability: float = 0.8
    brightness: float = 0.3  # overall gain drawn in 1 +- this
    contrast: float = 0.3  # contrast about the image's mean, 1 +- this
    saturation: float = 0.3  # colourfulness, 1 +- this (0: grey)
    white_balance: float = 0.1  # each channel's gain, 1 +- this
    blur: float = 1.0  # Gaussian blur sigma drawn in [0, this], input pixels
    noise: float = 6.0  # sensor noise std drawn in [0, this], grey levels of 0-255

    @classmethod
    def from_config(cls, config: dict) -> PhotometricAugmentation | None:
        """The config's ``augmentation`` tree, or None when it is not active."""
        tree = dict(config.get("augmentation") or {})
        if not tree.pop("active", False):
            return None
        return cls(**tree)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 3, H, W) network inputs in [-1, 1] -> the same shape, memory format and range, changed per image.

        The colour changes are one 3x3 matrix and offset per image (one pass over the pixels); blur and noise
        go to the images that draw them (half each), the noise drawn at half resolution and magnified, as
        demosaicing correlates neighbouring pixels' noise. Random numbers are what costs at these sizes.
        """
        count, channels, height, width = images.shape
        device = images.device
        chosen = torch.nonzero(torch.rand(count, generator=generator, device=device) < self.probability).flatten()
        if len(chosen) == 0:
            return images
        pixels = images[chosen].float()  # [-1, 1]: the affine map below is folded into this range
        matrix, offset = self._colour((pixels.mean(dim=(2, 3)) + 1) / 2, generator)
        offset = matrix.sum(dim=2, keepdim=True) + 2 * offset - 1  # x = 2 p - 1 on both sides of p -> M p + o
        pixels = torch.baddbmm(offset, matrix, pixels.reshape(len(chosen), channels, -1)).view(pixels.shape)
        blurred = self._some(len(chosen), generator, device) if self.blur > 0 else None
        if blurred is not None and len(blurred):
            sigma = torch.rand(len(blurred), 1, generator=generator, device=device).mul(self.blur).clamp_min(1e-3)
            size = 2 * math.ceil(2 * self.blur) + 1
            pixels[blurred] = gaussian_blur2d(pixels[blurred], (size, size), sigma.expand(-1, 2))
        noisy = self._some(len(chosen), generator, device) if self.noise > 0 else None
        if noisy is not None and len(noisy):
            half = (len(noisy), channels, (height + 1) // 2, 1, (width + 1) // 2, 1)
            std = torch.rand(len(noisy), 1, 1, 1, 1, 1, generator=generator, device=device) * (2 * self.noise / 255)
            grain = torch.randn(half, generator=generator, device=device).mul_(std).expand(-1, -1, -1, 2, -1, 2)
            grain = grain.reshape(len(noisy), channels, 2 * half[2], 2 * half[4])[:, :, :height, :width]
            pixels[noisy] += grain
        pixels = pixels.clamp_(-1.0, 1.0).to(images.dtype)
        changed = pixels if len(chosen) == count else images.index_copy(0, chosen, pixels)
        return changed.contiguous(memory_format=_memory_format(images))

    def _colour(self, means: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image (N, 3, 3) and (N, 3, 1) on colours in [0, 1], from each image's (N, 3) channel ``means``: white
        balance and brightness gains, then contrast about the mean, then saturation about the luma, composed
        into one affine map of each pixel's colour."""
        count, device = means.shape[0], means.device

        def factors(spread: float, *shape: int) -> torch.Tensor:
            uniform = torch.rand(count, *shape, generator=generator, device=device)
            return 1.0 + spread * (2.0 * uniform - 1.0)

        gain = factors(self.brightness, 1) * factors(self.white_balance, 3)  # (N, 3)
        contrast, saturation = factors(self.contrast, 1, 1), factors(self.saturation, 1, 1)
        luma = torch.tensor(LUMA, device=device)
        identity = torch.eye(3, device=device)
        desaturate = saturation * identity + (1 - saturation) * luma.expand(3, 3)  # rows: each output channel
        matrix = desaturate @ (contrast * torch.diag_embed(gain))
        mean = (means * gain).mean(dim=1).view(count, 1, 1)  # the gained image's mean grey
        offset = desaturate @ ((1 - contrast) * mean).expand(count, 3, 1)
        return matrix, offset

    def _some(self, count: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        """Indices of about half of ``count`` images: those one effect goes to."""
        return torch.nonzero(torch.rand(count, generator=generator, device=device) < 0.5).flatten()


def _memory_format(images: torch.Tensor) -> torch.memory_format:
    """The memory format ``images`` are in (channels-last under the GPU configs' speed features)."""
    if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
