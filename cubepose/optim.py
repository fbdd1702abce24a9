"""The optimizer from the ``optimizer`` config tree and gradient accumulation."""

from __future__ import annotations

import torch


def build_optimizer(parameters, optimizer_config: dict) -> torch.optim.Optimizer:
    """Adam with the configured lr, betas and weight decay (Unity: lr 1e-4, betas 0.9/0.999)."""
    return torch.optim.Adam(
        parameters,
        lr=optimizer_config["lr"],
        betas=tuple(optimizer_config["betas"]),
        weight_decay=optimizer_config["weight_decay"],
    )


class GradientAccumulator:
    """Sums gradients of ``steps`` batches, then takes one optimizer step.

    Each batch loss is divided by ``steps``, so the applied gradient is that of the
    mean loss over the accumulated batches (an effective batch of steps x batch_size).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int) -> None:
        self.optimizer = optimizer
        self.steps = steps
        self.pending = 0  # backward passes since the last optimizer step

    def backward(self, loss: torch.Tensor) -> bool:
        """Accumulate the gradient of ``loss``; returns True when an optimizer step was taken."""
        (loss / self.steps).backward()
        self.pending += 1
        if self.pending < self.steps:
            return False
        self.optimizer.step()
        self.reset()
        return True

    def reset(self) -> None:
        """Drop partial gradients (e.g. after restoring a checkpoint)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.pending = 0
