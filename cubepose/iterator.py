"""The edflow Iterator: inputs -> model -> criterion -> train_op / log_op / eval_op.

Loss and metric formulas live in cubepose.losses and cubepose.metrics; this module only
wires them to edflow, the optimizer and checkpoints.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edflow.iterators.template_iterator import TemplateIterator
from edflow.project_manager import ProjectManager

from cubepose.acceleration import accelerate
from cubepose.checkpoints import load_checkpoint, save_checkpoint
from cubepose.config import validate_config
from cubepose.data.images import to_network_range, to_uint8
from cubepose.errors import ConfigError
from cubepose.losses import Criterion
from cubepose.metrics import translation_squared_error, unity_dataset_metrics, unity_quaternion_error
from cubepose.optim import GradientAccumulator, build_optimizer, build_scheduler
from cubepose.overlay import pose_overlays
from cubepose.seeding import seed_global_generators, seed_shuffling
from cubepose.storage import Uploader, is_remote

logger = logging.getLogger(__name__)

LOG_IMAGES = 16  # inputs shown in the log_op image grids
LOG_POSE_SIZE = 128  # pose overlays are enlarged to about this side so the wireframes stay readable


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a config error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' but no CUDA device is available; use configs/cpu.yaml or --device cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _numpy(values: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in values.items()}


def _pose_images(
    image: np.ndarray,
    camera: np.ndarray,
    translation: np.ndarray,
    quaternion: np.ndarray,
    predictions: dict[str, np.ndarray],
) -> np.ndarray:
    """The first inputs enlarged to about 128 px with the true (green) and predicted (red) cubes, in [-1, 1]."""
    shown = slice(0, LOG_IMAGES)
    true = (np.asarray(translation)[shown], np.asarray(quaternion)[shown])
    predicted_q = predictions["quaternion"][shown] if "quaternion" in predictions else true[1]
    scale = max(1, LOG_POSE_SIZE // image.shape[1])
    canvas = pose_overlays(
        to_uint8(image[shown]), np.asarray(camera)[shown], true, (predictions["translation"][shown], predicted_q), scale
    )
    return to_network_range(canvas)


def remove_interrupted_writes(directory: str) -> None:
    """Delete temporary checkpoint files left by a killed save (``.model-<step>.ckpt.*.tmp``)."""
    for leftover in Path(directory).glob(".*.ckpt.*.tmp"):
        logger.info("removing %s, left by an interrupted save", leftover)
        leftover.unlink(missing_ok=True)


def run_uploader(settings: dict, run_name: str) -> Uploader:
    """An Uploader to ``<checkpoint/upload>/<run name>/``, drained before the process exits."""
    uploader = Uploader(f"{settings['upload'].rstrip('/')}/{run_name}", attempts=settings["upload_attempts"])
    atexit.register(uploader.close)
    return uploader


class Iterator(TemplateIterator):
    """Trains and evaluates ``cubepose.models.PoseNet`` under edflow."""

    def __init__(self, config: dict, root: str, model: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        validate_config(config)
        super().__init__(config, root, model, *args, **kwargs)
        seed_global_generators(config["seed"])
        self.device = resolve_device(config["device"])
        self.network = model  # what checkpoints hold; self.model may be its torch.compile wrapper
        self.model, self.acceleration = accelerate(model, config, self.device)
        self.optimizer = build_optimizer(self.network.parameters(), config["optimizer"])
        optimizer_steps = math.ceil(config.get("num_steps", 1) / config["accumulation_steps"])
        self.scheduler = build_scheduler(self.optimizer, config["optimizer"], optimizer_steps)
        self.accumulator = GradientAccumulator(
            self.optimizer,
            config["accumulation_steps"],
            clip_grad_norm=config["optimizer"]["clip_grad_norm"],
            scheduler=self.scheduler,
            scaler=self.acceleration.scaler(),
        )
        self.criterion = Criterion.from_config(config)
        self.uploader = None
        if not config.get("test_mode", False):
            remove_interrupted_writes(ProjectManager.checkpoints)
            if config["checkpoint"]["upload"]:
                self.uploader = run_uploader(config["checkpoint"], Path(ProjectManager.root).name)

    def iterate(self, batches: dict) -> None:
        """Seed each split's example order (``seed``), then let edflow iterate."""
        for offset, split in enumerate(sorted(batches)):
            seed_shuffling(batches[split], self.config["seed"] + offset)
        super().iterate(batches)

    def initialize(self, checkpoint_path: str | None = None) -> None:
        if checkpoint_path is None and self.config.get("test_mode", False):
            self.logger.warning(
                "no checkpoint to evaluate: the model is untrained. Pass -p logs/<run> or -c <checkpoint>."
            )
        super().initialize(checkpoint_path)

    # -- checkpoints -------------------------------------------------------------------

    def save(self, checkpoint_path: str) -> None:
        """Atomically write model, optimizer, step and the resolved config; queue the upload if configured."""
        save_checkpoint(
            checkpoint_path,
            model=self.network.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            global_step=self.get_global_step(),
            config=json.loads(json.dumps(self.config, default=str)),
        )
        if self.uploader is not None:
            self.uploader.submit(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        """Load model and (for training) optimizer state from a path, gs:// or http(s)://.

        edflow restores the global step from the name (model-<step>.ckpt). A remote checkpoint
        is checked against ``checkpoint/sha256`` when it is set.
        """
        pin = self.config["checkpoint"]["sha256"] if is_remote(checkpoint_path) else None
        state = load_checkpoint(
            checkpoint_path,
            self.network,
            device=self.device,
            config=self.config,
            cache_dir=self.config["data"]["cache_dir"],
            sha256=pin,
        )
        if not self.config.get("test_mode", False) and "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
            if "scheduler" in state:
                self.scheduler.load_state_dict(state["scheduler"])
        self.accumulator.reset()

    # -- the step --------------------------------------------------------------------------

    def step_op(
        self, model: torch.nn.Module, image: np.ndarray, translation: np.ndarray, quaternion: np.ndarray, **kwargs: Any
    ) -> dict[str, Callable]:
        inputs = self.acceleration.inputs(
            torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(0, 3, 1, 2)
        )
        targets = {
            "translation": torch.from_numpy(np.asarray(translation, np.float32)).to(self.device),
            "quaternion": torch.from_numpy(np.asarray(quaternion, np.float32)).to(self.device),
        }
        if "camera" in kwargs:  # derived targets (the two-stage model's window) need it
            targets["camera"] = torch.from_numpy(np.asarray(kwargs["camera"], np.float32)).to(self.device)
        trained: dict[str, dict[str, np.ndarray]] = {}
        step = self.get_global_step()  # for loss-weight ramps

        def evaluate() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
            """Predictions and per-instance losses: from train_op of this step, else a no-grad pass."""
            if trained:
                return trained["predictions"], trained["losses"]
            model.eval()
            with torch.no_grad():
                predictions = forward()
                losses = self.criterion(predictions, targets, step)
            return _numpy(predictions), _numpy(losses)

        def forward() -> dict[str, torch.Tensor]:
            with self.acceleration.autocast():
                predictions = model(inputs)
            return {key: value.float() for key, value in predictions.items()}

        def train_op() -> None:
            model.train()
            predictions = forward()
            losses = self.criterion(predictions, targets, step)
            self.accumulator.backward(losses["total"].mean())
            trained["predictions"], trained["losses"] = _numpy(predictions), _numpy(losses)

        def log_op() -> dict:
            predictions, losses = evaluate()
            scalars = {f"loss_{name}": float(values.mean()) for name, values in losses.items()}
            scalars.update({f"weight_{name}": weight for name, weight in self.criterion.weights(step).items()})
            scalars["learning_rate"] = self.optimizer.param_groups[0]["lr"]
            if self.accumulator.last_grad_norm is not None:
                scalars["grad_norm"] = self.accumulator.last_grad_norm
            scalars.update(
                unity_dataset_metrics(
                    predictions["translation"], translation, predictions.get("quaternion"), quaternion
                )
            )
            images = {"inputs": np.asarray(image[:LOG_IMAGES])}
            if "camera" in kwargs:
                images["poses"] = _pose_images(image, kwargs["camera"], translation, quaternion, predictions)
            return {"images": images, "scalars": scalars}

        def eval_op() -> dict:
            predictions, losses = evaluate()
            labels = {
                "translation_pred": predictions["translation"],
                "translation_true": np.asarray(translation, np.float32),
                "quaternion_true": np.asarray(quaternion, np.float32),
                "translation_mse": translation_squared_error(predictions["translation"], translation),
                **{f"loss_{name}": values for name, values in losses.items()},
            }
            if "camera" in kwargs:  # intrinsics of the network input, for drawing poses in reports
                labels["camera"] = kwargs["camera"]
            if "quaternion" in predictions:
                labels["quaternion_pred"] = predictions["quaternion"]
                labels["orientation_error"] = unity_quaternion_error(predictions["quaternion"], quaternion)
            return {"labels": {k: np.asarray(v, np.float32) for k, v in labels.items()}}

        return {"train_op": train_op, "log_op": log_op, "eval_op": eval_op}
