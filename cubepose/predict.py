"""Pose prediction outside edflow: load a checkpoint once, then predict images a robot sends.

``PosePredictor`` follows the model-adapter pattern (``load``, ``save``, ``prepare_item``,
``predict_items``, ``predict``): a platform integration subclasses it and overrides
``prepare_item`` for its own input type; batching and the model call stay here.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cubepose.checkpoints import read_checkpoint, save_checkpoint
from cubepose.config import validate_config
from cubepose.data.images import resize_rgb
from cubepose.errors import CubeposeError
from cubepose.models import PoseNet
from cubepose.storage import fetch

logger = logging.getLogger(__name__)

ImageLike = str | os.PathLike | np.ndarray | Image.Image


class PosePredictor:
    """A trained PoseNet with the training preprocessing: images in, translation and quaternion out."""

    def __init__(
        self,
        model: PoseNet,
        config: dict,
        device: torch.device | str = "cpu",
        batch_size: int | None = None,
        global_step: int = 0,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.image_size = config["network"]["image_size"]
        self.batch_size = batch_size or config["test_batch_size"]
        self.global_step = global_step

    # -- load / save ---------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        checkpoint: str | os.PathLike,
        device: torch.device | str = "cpu",
        *,
        sha256: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int | None = None,
    ) -> PosePredictor:
        """Build the network a checkpoint (path, gs:// or http(s)://) was trained with and load its weights."""
        state = read_checkpoint(fetch(checkpoint, cache_dir, sha256), device)
        config = copy.deepcopy(state.get("config") or {})
        if "network" not in config:
            raise CubeposeError(f"{checkpoint} records no config; it was not written by cubepose's training")
        config["network"]["pretrained"] = None  # the checkpoint holds every weight
        model = PoseNet(validate_config(config))
        model.load_state_dict(state["model"])
        logger.info("loaded %s (step %s, %s)", checkpoint, state.get("global_step"), config["network"]["backbone"])
        return cls(model, config, device, batch_size, int(state.get("global_step") or 0))

    def save(self, path: str | os.PathLike) -> None:
        """Write the model and its config as a cubepose checkpoint that ``load`` reads back."""
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        save_checkpoint(path, model=state, config=self.config, global_step=self.global_step)

    # -- the adapter hooks ---------------------------------------------------------------

    def prepare_item(self, item: ImageLike) -> np.ndarray:
        """One image (path, uint8 RGB/gray/RGBA array or PIL image, any size) -> uint8 RGB HWC at the network size.

        Resized exactly as the training data; the scaling to [-1, 1] happens batched in ``predict_batch``.
        """
        if isinstance(item, Image.Image):
            return resize_rgb(item, self.image_size)
        if isinstance(item, np.ndarray):
            if item.dtype == np.uint8 and item.shape == (self.image_size, self.image_size, 3):
                return item  # already the network input: nothing to resize
            return resize_rgb(_array_image(item), self.image_size)
        if isinstance(item, (str, os.PathLike)):
            try:
                with Image.open(item) as image:
                    return resize_rgb(image, self.image_size)
            except FileNotFoundError:
                raise CubeposeError(f"no image at {item}; give the path of a PNG or JPEG file") from None
            except (OSError, UnidentifiedImageError, SyntaxError) as err:
                raise CubeposeError(f"cannot read image {item} ({err}); give a PNG or JPEG file") from None
        raise CubeposeError(f"cannot predict a {type(item).__name__}; give a path, a numpy array or a PIL image")

    @torch.inference_mode()
    def predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Prepared images (B, S, S, 3) uint8 -> ``translation`` (B, 3) and ``quaternion`` (B, 4) x, y, z, w.

        Scaled to [-1, 1] on the device in float32, the same arithmetic as the training data's
        ``to_network_range``; the channels-last layout is kept (faster convolutions on CPU).
        """
        images = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        outputs = {k: v.float().cpu().numpy() for k, v in self.model(images).items()}
        if "quaternion" in outputs:  # canonical sign, w >= 0
            q = outputs["quaternion"]
            outputs["quaternion"] = np.where(q[:, 3:] < 0, -q, q)
        return outputs

    def predict_items(self, items: Iterable[ImageLike]) -> Iterator[dict[str, np.ndarray]]:
        """Predict ``items`` in batches of ``batch_size``; yields one dict of arrays per batch, in order."""
        batch: list[np.ndarray] = []
        for item in items:
            batch.append(self.prepare_item(item))
            if len(batch) == self.batch_size:
                yield self.predict_batch(np.stack(batch))
                batch = []
        if batch:
            yield self.predict_batch(np.stack(batch))

    def predict(self, images: Iterable[ImageLike]) -> dict[str, np.ndarray]:
        """Poses of ``images``: ``translation`` (N, 3) in metres, ``quaternion`` (N, 4) x, y, z, w (w >= 0).

        A symmetric-cube model (``network/symmetric``) returns no ``quaternion``.
        """
        parts = list(self.predict_items(images))
        if not parts:
            raise CubeposeError("no images to predict")
        if len(parts) == 1:
            return parts[0]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _array_image(array: np.ndarray) -> Image.Image:
    """A uint8 HxW, HxWx3 (RGB) or HxWx4 (RGBA) array as a PIL image."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise CubeposeError(
            f"an image array must be uint8 of shape HxW, HxWx3 (RGB) or HxWx4, got {array.dtype} {array.shape}; "
            "convert with (image * 255).astype(np.uint8) for floats in [0, 1], or image[..., ::-1] for BGR"
        )
    return Image.fromarray(array)


def as_json_record(name: str, poses: dict[str, Any], index: int) -> dict[str, Any]:
    """One image's pose as plain JSON data: ``{"image", "translation", "quaternion"}``."""
    quaternion = poses.get("quaternion")
    return {
        "image": name,
        "translation": [float(v) for v in poses["translation"][index]],
        "quaternion": None if quaternion is None else [float(v) for v in quaternion[index]],
    }
