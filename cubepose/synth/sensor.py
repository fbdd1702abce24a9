"""Sensor effects applied after rendering: Gaussian blur and pixel noise, as a camera adds them."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def apply_sensor(image: np.ndarray, blur: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` (H, W, 3) uint8 blurred with sigma ``blur`` px and given Gaussian noise of std ``noise``."""
    if blur > 0.05:
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(blur)))
    if noise > 0:
        noisy = rng.standard_normal(image.shape, dtype=np.float32)  # float32: half the time of float64
        noisy *= noise
        noisy += image
        noisy += 0.5  # round to nearest
        image = np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)
    return image
