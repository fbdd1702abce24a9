"""Torch device names checked before use, so a missing GPU is reported as such and not as a
failure of whatever the device was first used for (a checkpoint load, a model transfer)."""

from __future__ import annotations

import torch

from cubepose.errors import ConfigError

DEVICE_NAMES = "cpu, cuda, cuda:<index>, mps or auto (CUDA when present, else cpu)"


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device ``name`` means on this machine; ``auto`` picks CUDA when present.

    Raises ConfigError for a name torch does not know (``gpu``) and for a CUDA or MPS device
    this machine lacks, instead of letting the first tensor transfer fail somewhere deeper.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = name.strip()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r}; use {DEVICE_NAMES}") from None
    if device.type == "cuda":
        _check_cuda(name, device)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: MPS (Apple GPU) is not available on this machine; use --device cpu")
    return device


def _check_cuda(name: str, device: torch.device) -> None:
    """Raise ConfigError unless this machine has the CUDA device ``device`` names."""
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: no CUDA device is available on this machine; use --device cpu")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ConfigError(
            f"device {name!r}: this machine has {count} CUDA device(s), numbered from 0; "
            f"use cuda:0 to cuda:{count - 1}, or --device cpu"
        )
