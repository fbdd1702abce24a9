"""CUDA-only speed features (mixed precision, channels-last) and optional torch.compile.

On the CPU, mixed precision and channels-last are ignored with one warning: autocast to
bfloat16 on CPU changes the numerics and is rarely faster on small cores. ``compile`` is off by
default: its first step costs tens of seconds (37 s for the CPU config's model here).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)


@dataclass
class Acceleration:
    """What a run uses: autocast and a GradScaler under mixed precision, the memory format."""

    device: torch.device
    mixed_precision: bool
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        """float16 autocast on CUDA under mixed precision; otherwise nothing."""
        if self.mixed_precision:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler for float16 gradients, or None."""
        return torch.amp.GradScaler("cuda") if self.mixed_precision else None

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """Images in the run's memory format."""
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


def accelerate(model: torch.nn.Module, config: dict, device: torch.device) -> tuple[torch.nn.Module, Acceleration]:
    """Move ``model`` to ``device`` with the configured features; returns (callable model, settings).

    The callable may be a torch.compile wrapper: save and load the original ``model``.
    """
    cuda = device.type == "cuda"
    wanted = [key for key in ("mixed_precision", "channels_last") if config[key]]
    if wanted and not cuda:
        logger.warning("%s: CUDA only, ignored on %s", ", ".join(wanted), device)
    settings = Acceleration(device, cuda and config["mixed_precision"], cuda and config["channels_last"])
    model.to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if config["compile"] else model
    return runner, settings
