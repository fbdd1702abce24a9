"""The optimizer, its learning-rate schedule and the update step from the ``optimizer`` config tree.

One ``GradientAccumulator.backward`` per batch; every ``accumulation_steps`` batches it clips the
gradient norm (if configured), steps the optimizer (through a GradScaler under mixed precision)
and advances the schedule. Schedules count optimizer steps, not batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def build_optimizer(parameters: Iterable[torch.nn.Parameter], optimizer_config: dict) -> torch.optim.Optimizer:
    """Adam with the configured lr, betas and weight decay (Unity: lr 1e-4, betas 0.9/0.999)."""
    return torch.optim.Adam(
        parameters,
        lr=optimizer_config["lr"],
        betas=tuple(optimizer_config["betas"]),
        weight_decay=optimizer_config["weight_decay"],
    )


def lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int, final_factor: float) -> float:
    """The share of the base learning rate at optimizer step ``step``.

    A linear warm-up from 1/warmup_steps to 1, then ``constant`` 1 or a ``cosine`` decay to
    ``final_factor`` at ``total_steps`` (and ``final_factor`` after it).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, optimizer_config: dict, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The ``optimizer/schedule`` over ``total_steps`` optimizer steps."""
    settings = (
        optimizer_config["schedule"],
        optimizer_config["warmup_steps"],
        total_steps,
        optimizer_config["final_lr_factor"],
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, *settings))


class GradientAccumulator:
    """Sums gradients of ``steps`` batches, then takes one (clipped, scheduled) optimizer step.

    Each batch loss is divided by ``steps``, so the applied gradient is that of the mean loss
    over the accumulated batches (an effective batch of steps x batch_size).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        steps: int,
        clip_grad_norm: float | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.steps = steps
        self.clip_grad_norm = clip_grad_norm
        self.scheduler = scheduler
        self.scaler = scaler
        self.pending = 0  # backward passes since the last optimizer step
        self.last_grad_norm: float | None = None  # before clipping, for the logs

    def backward(self, loss: torch.Tensor) -> bool:
        """Accumulate the gradient of ``loss``; returns True when an optimizer step was taken."""
        scaled = loss / self.steps
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        self.pending += 1
        if self.pending < self.steps:
            return False
        if self.clip_grad_norm is not None:
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
            norm = torch.nn.utils.clip_grad_norm_(parameters, self.clip_grad_norm)
            self.last_grad_norm = float(norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.reset()
        return True

    def reset(self) -> None:
        """Drop partial gradients (e.g. after restoring a checkpoint)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.pending = 0
