"""One training step: a batch -> model -> criterion -> accumulated, clipped, scheduled update.

The edflow Iterator's ``train_op`` and every training benchmark under eval/ drive this class,
so what a benchmark measures is what ``edflow -t`` runs. It owns what a step needs (the
device and its speed features, optimizer, schedule, gradient accumulation, criterion);
checkpoints, logging and evaluation outputs stay with the caller.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from cubepose.data.images import network_inputs
from cubepose.losses.criterion import Criterion
from cubepose.training.acceleration import accelerate
from cubepose.training.augmentation import PhotometricAugmentation
from cubepose.training.devices import resolve_device
from cubepose.training.distributed import data_parallel, flagged_ranks, join, launched_ranks, rank_device
from cubepose.training.optim import GradientAccumulator, build_optimizer, build_scheduler

# camera: derived targets (the crop window, keypoints) need it; translations, quaternions, instance_count: every
# instance, with data/max_instances above 1
TARGET_KEYS = ("translation", "quaternion", "camera", "translations", "quaternions", "instance_count")


@dataclass
class StepResult:
    """Host copies of a step's predictions and per-instance losses (each (B, ...))."""

    predictions: dict[str, np.ndarray]
    losses: dict[str, np.ndarray]


class NonFiniteLossError(ArithmeticError):
    """A step's loss was NaN or inf; raised before the update, so the weights are those before the step. With
    several ranks it is raised on all of them, and ``ranks`` says on which the loss was not finite."""

    def __init__(self, step: int, result: StepResult, ranks: list[int] | None = None) -> None:
        super().__init__(f"non-finite loss at step {step}")
        self.step = step
        self.result = result
        self.ranks = ranks or [0]


def _host(values: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {key: value.detach().float().cpu().numpy() for key, value in values.items()}


class TrainingStep:
    """Forward, criterion, accumulation, clipping and the learning-rate schedule of one batch.

    ``num_steps`` sets the schedule's horizon (in batches); ``None`` keeps the learning rate
    constant until ``schedule`` is called, as a wall-clock benchmark does after timing a few steps.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        config: dict,
        num_steps: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.config = config
        self.ranks = launched_ranks()  # several under torchrun: gradients averaged over them
        self.device = rank_device(resolve_device(config["device"] if device is None else device), self.ranks)
        join(self.device, self.ranks)
        self.network = network  # what checkpoints hold; ``model`` may wrap it (torch.compile, DDP)
        self.local_model, self.acceleration = accelerate(network, config, self.device)  # evaluation runs it
        self.model = data_parallel(self.local_model, self.device, self.ranks)
        self.optimizer = build_optimizer(network.parameters(), config["optimizer"])
        self.criterion = Criterion.from_config(config)
        self.augmentation = PhotometricAugmentation.from_config(config)  # None: training images as they are
        self.accumulator = GradientAccumulator(
            self.optimizer,
            config["accumulation_steps"],
            clip_grad_norm=config["optimizer"]["clip_grad_norm"],
            scaler=self.acceleration.scaler(),
        )
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        if num_steps is not None:
            self.schedule(num_steps)

    def schedule(self, num_steps: int) -> None:
        """Run the configured schedule (warm-up, decay) over ``num_steps`` batches from now on."""
        optimizer_steps = max(1, math.ceil(num_steps / self.config["accumulation_steps"]))
        self.scheduler = build_scheduler(self.optimizer, self.config["optimizer"], optimizer_steps)
        self.accumulator.scheduler = self.scheduler

    def inputs(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) images, uint8 or already in [-1, 1] -> the model's input on the device."""
        images = torch.as_tensor(np.ascontiguousarray(images)).to(self.device)
        if images.dtype == torch.uint8:
            return self.acceleration.inputs(network_inputs(images))
        return self.acceleration.inputs(images.permute(0, 3, 1, 2))

    def targets(self, batch: Mapping[str, np.ndarray | torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch's labels the criterion compares against, float32 on the device."""
        return {
            key: torch.as_tensor(np.asarray(batch[key], np.float32)).to(self.device)
            for key in TARGET_KEYS
            if key in batch
        }

    def forward(
        self, inputs: torch.Tensor, targets: dict[str, torch.Tensor] | None = None, model: torch.nn.Module | None = None
    ) -> dict[str, torch.Tensor]:
        """The outputs of ``model`` (default: the training one) in float32 (autocast under mixed precision). Given
        ``targets``, a network that trains a later stage on true inputs (the zoom-in model's crop windows:
        ``teacher_windows``) gets them."""
        model = self.model if model is None else model
        teacher = getattr(self.network, "teacher_windows", None)
        with self.acceleration.autocast():
            if targets is not None and teacher is not None:
                predictions = model(inputs, teacher(targets))
            else:
                predictions = model(inputs)
        return {key: value.float() for key, value in predictions.items()}

    def train(self, inputs: torch.Tensor, targets: dict[str, torch.Tensor], step: int) -> StepResult:
        """One training step at global ``step`` (for loss-weight ramps), on ``inputs`` changed by the photometric
        augmentation when the config activates it.

        Raises NonFiniteLossError before the update when a loss is NaN or inf, on every rank when it is so on
        any; the check reads the host copy of the losses that the step makes anyway, so it adds no device sync
        (and, with several ranks, one all-reduce of a flag). Under gradient accumulation the ranks average
        their gradients only on the batch that completes an optimizer step.
        """
        self.model.train()
        if self.augmentation is not None:
            inputs = self.augmentation(inputs)
        predictions = self.forward(inputs, targets)
        losses = self.criterion(predictions, targets, step)
        result = StepResult(_host(predictions), _host(losses))
        diverged = flagged_ranks(not np.isfinite(result.losses["total"]).all(), self.ranks)
        if diverged:
            raise NonFiniteLossError(step, result, diverged)
        accumulating = self.accumulator.pending + 1 < self.accumulator.steps
        with self.model.no_sync() if accumulating and self.ranks.distributed else contextlib.nullcontext():
            self.accumulator.backward(losses["total"].mean())
        return result

    @torch.no_grad()
    def evaluate(self, inputs: torch.Tensor, targets: dict[str, torch.Tensor], step: int) -> StepResult:
        """Predictions and per-instance losses in evaluation mode, without gradients."""
        self.local_model.eval()
        predictions = self.forward(inputs, model=self.local_model)  # no collective: ranks evaluate on their own
        return StepResult(_host(predictions), _host(self.criterion(predictions, targets, step)))

    @torch.no_grad()
    def poses(self, predictions: Mapping[str, np.ndarray], camera: np.ndarray | None) -> dict[str, np.ndarray]:
        """The poses in a step's host ``predictions``: ``translation``, ``quaternion`` and, for a keypoint network,
        ``confidence`` and ``reprojection_error`` (its PnP solve with ``camera`` (B, 4), network-input pixels).

        Computed on the host from the copies the step made: only the steps that log or evaluate pay for it.
        """
        outputs = {key: torch.from_numpy(np.asarray(value)) for key, value in predictions.items()}
        cameras = None if camera is None else torch.as_tensor(np.asarray(camera, np.float32))
        return _host(self.network.poses(outputs, cameras))

    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]
