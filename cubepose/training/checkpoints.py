"""Checkpoint files: atomic saves, safe loads from a path, gs:// or http(s)://, config checks.

A checkpoint is a torch file of tensors and plain data only (model and optimizer state,
global step, the resolved config, the training camera of cubepose.inference.training_camera), so loading
uses ``torch.load(weights_only=True)`` and never runs code from the file.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
import zlib
from typing import Any

import torch

from cubepose.errors import CheckpointError
from cubepose.io.atomic import atomic_open
from cubepose.storage import fetch

logger = logging.getLogger(__name__)

FORMAT = "cubepose-checkpoint-v1"
MODEL_TREES = ("network",)  # config trees that decide the model's layers


def save_checkpoint(path: str | os.PathLike, **state: Any) -> None:
    """Write ``state`` (tensors and plain data only) to ``path`` via a temporary file and rename,
    so a crash mid-save never leaves a truncated checkpoint under the final name."""
    with atomic_open(path, "wb") as handle:
        torch.save({"format": FORMAT, **state}, handle)


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """The state stored in a local cubepose checkpoint; anything but tensors and plain data is refused."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a model-<step>.ckpt file")
    if not zipfile.is_zipfile(path):  # torch's format is a zip; a cut-off one has no central directory
        raise CheckpointError(
            f"{path} is not a readable checkpoint: truncated, damaged or not a torch file; save or download it again"
        )
    verify_checksums(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds Python objects other than tensors and plain data; refusing to unpickle it, as that "
            f"could run code from the file. Load checkpoints written by cubepose ({str(err).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint: truncated, damaged or not a torch file "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); save or download it again"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise CheckpointError(f"{path} is a torch file but not a cubepose checkpoint (no {FORMAT!r} marker)")
    return state


def verify_checksums(path: str | os.PathLike) -> None:
    """Check every zip member of the torch file ``path`` against the CRC-32 recorded when it was saved.

    torch.load does not check them, so a flipped bit in a weight would load silently as a wrong
    model. Files saved with torch's CRC computation switched off record 0 for every member;
    those carry nothing to check and are loaded as before.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if info.file_size]
            if members and all(info.CRC == 0 for info in members):
                logger.info("%s records no checksums (saved with torch's CRC-32 off); not verified", path)
                return
            for info in members:
                _read_member(archive, info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as err:
        raise CheckpointError(
            f"{path} is damaged: {err} (its bytes changed on disk or in transfer). Download or save it "
            "again, or use an earlier checkpoint"
        ) from None


CHECK_CHUNK = 1 << 20  # bytes read at a time while checking


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Read one member to its end; zipfile compares its CRC-32 there and raises BadZipFile on a mismatch."""
    with archive.open(info) as member:
        while member.read(CHECK_CHUNK):
            pass


def config_differences(saved: dict, current: dict, trees: tuple[str, ...] = MODEL_TREES) -> list[str]:
    """``tree/key: checkpoint A, config B`` for each model setting that differs between two configs."""

    def flatten(tree: Any, prefix: str) -> dict[str, Any]:
        if not isinstance(tree, dict):
            return {prefix: tree}
        return {k: v for key, sub in tree.items() for k, v in flatten(sub, f"{prefix}/{key}").items()}

    differences = []
    for name in trees:
        old, new = flatten(saved.get(name, {}), name), flatten(current.get(name, {}), name)
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                differences.append(f"{key}: checkpoint {old.get(key)!r}, config {new.get(key)!r}")
    return differences


def load_checkpoint(
    location: str | os.PathLike,
    model: torch.nn.Module,
    *,
    device: torch.device | str = "cpu",
    config: dict | None = None,
    cache_dir: str | os.PathLike | None = None,
    sha256: str | None = None,
) -> dict:
    """Load a checkpoint (path, gs:// or http(s)://, sha256-verified if pinned) into ``model``; return its state.

    With ``config``, model settings that differ from the checkpoint's are logged as a warning;
    weights whose shapes cannot fit fail with those settings named.
    """
    state = read_checkpoint(fetch(location, cache_dir, sha256), device)
    differences = config_differences(state.get("config") or {}, config) if config is not None else []
    if differences:
        logger.warning("%s was trained with other model settings: %s", location, "; ".join(differences))
    hint = f"; it differs in {'; '.join(differences)}" if differences else ""
    load_weights(model, state, location, f"the configured network{hint}")
    return state


def load_weights(model: torch.nn.Module, state: dict, location: object, network: str) -> None:
    """Load a read checkpoint's ``model`` weights into ``model``; weights of another network, or an entry that is
    not a state dict, fail with a CheckpointError naming the file (``network`` says which network was built)."""
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise CheckpointError(
            f"{location} holds no model weights (its 'model' entry is a {type(weights).__name__}); "
            "use a checkpoint that cubepose's training wrote"
        )
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError) as err:
        detail = " ".join(str(err).split())[:600]
        raise CheckpointError(
            f"{location} does not fit {network}. Use the checkpoint's settings (e.g. --network/<key> <value>) "
            f"or another checkpoint ({detail})"
        ) from None
