"""Checkpoint files: atomic saves and safe loads (``weights_only=True``, plain-data metadata)."""

from __future__ import annotations

import os
from typing import Any

import torch

from cubepose.errors import CheckpointError
from cubepose.io_utils import atomic_open

FORMAT = "cubepose-checkpoint-v1"


def save_checkpoint(path: str | os.PathLike, **state: Any) -> None:
    """Write ``state`` (tensors and plain data only) to ``path`` via a temporary file and rename,
    so a crash mid-save never leaves a truncated checkpoint under the final name."""
    with atomic_open(path, "wb") as handle:
        torch.save({"format": FORMAT, **state}, handle)


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module, device: torch.device | str = "cpu") -> dict:
    """Load a cubepose checkpoint into ``model`` and return the whole state dict.

    Only tensors and plain data are unpickled; anything else is refused.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a model-<step>.ckpt file")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, not a torch file
        raise CheckpointError(f"{path} is not a readable cubepose checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise CheckpointError(f"{path} is not a cubepose checkpoint (no {FORMAT!r} marker)")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit the configured network: {err}") from err
    return state
