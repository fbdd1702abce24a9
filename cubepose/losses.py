"""Per-instance losses and the weighted criterion built from the config's ``losses`` tree.

``losses/<quantity>: {type, weight}``: the quantity (translation or orientation) names
what is compared, the type names a function in ``LOSSES``. Each loss returns one value
per instance (B,); the total is the weighted sum, reduced to a batch mean by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cubepose.errors import ConfigError
from cubepose.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[LossFn] = Registry("loss")

# losses/<quantity> compares this model output / dataset key.
QUANTITY_KEYS = {"translation": "translation", "orientation": "quaternion"}


@LOSSES.register("mse")
def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over components (Unity's loss for both translation and quaternion)."""
    return ((prediction - target) ** 2).mean(dim=-1)


@LOSSES.register("l1")
def l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over components."""
    return (prediction - target).abs().mean(dim=-1)


@LOSSES.register("smooth_l1")
def smooth_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Huber loss (beta 0.01, i.e. 1 cm for translation) averaged over components."""
    return F.smooth_l1_loss(prediction, target, reduction="none", beta=0.01).mean(dim=-1)


class Criterion:
    """Weighted sum of the configured per-instance losses."""

    def __init__(self, losses: dict, symmetric: bool = False) -> None:
        # A symmetric cube has no defined orientation: its loss is dropped.
        self.terms = [
            (name, LOSSES.get(entry["type"], f"losses/{name}/type"), float(entry["weight"]))
            for name, entry in losses.items()
            if not (symmetric and name == "orientation")
        ]
        if not self.terms:
            raise ConfigError("losses: no loss left to optimise; configure at least losses/translation")

    def __call__(
        self, predictions: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Per-instance values (B,) of each loss and of ``total``."""
        values = {}
        for name, loss_fn, _ in self.terms:
            key = QUANTITY_KEYS[name]
            values[name] = loss_fn(predictions[key], targets[key])
        values["total"] = sum(weight * values[name] for name, _, weight in self.terms)
        return values
