"""Per-instance losses and the weighted criterion built from the config's ``losses`` tree.

``losses/<quantity>: {type, weight}``: the quantity names what is compared (translation,
orientation, the whole pose, or the two-stage model's crop window), the type names a function
in ``LOSSES``. Each loss returns one value per instance (B,); the total is the weighted sum,
reduced to a batch mean by the caller. A weight is a number or a linear ramp
``{start, end, start_step, end_step}``, as edflow's VUNet ramps its KL weight. For a symmetric
object (``object/symmetries``) the losses of its orientation and pose compare the prediction with
the closest symmetric equivalent of the target: the minimum over the symmetries, batched (B, K).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from cubepose.config import check_number, component_check
from cubepose.errors import ConfigError
from cubepose.geometry.object import Box
from cubepose.geometry.rotations import canonical_sign
from cubepose.geometry.symmetries import is_identity_only, right_products
from cubepose.losses.functions import LOSSES, LossFn
from cubepose.losses.quantities import QUANTITIES
from cubepose.losses.weights import ramp_is_valid, weight_schedule
from cubepose.models.codecs.targets import Targets, concatenated


@component_check
def check_losses(config: dict, errors: list[str]) -> None:
    """The rules of the ``losses`` tree: known quantities, ``{type, weight}`` entries, loss types that
    apply to their quantity (each loss declares its quantities when it is registered), and weights:
    a finite number >= 0 (default 1) or a ramp."""
    for name, entry in config["losses"].items():
        path = f"losses/{name}"
        if name not in QUANTITIES:
            errors.append(f"unknown loss {path!r}; the losses tree takes {', '.join(QUANTITIES.names())}")
            continue
        if not isinstance(entry, dict):
            errors.append(f"{path}: expected {{type: ..., weight: ...}}, got {entry!r}")
            continue
        for key in entry:
            if key not in ("type", "weight"):
                errors.append(f"unknown key '{path}/{key}'; a loss takes type and weight")
        _check_weight(entry, path, errors)
        loss_type = entry.get("type")
        if loss_type not in LOSSES:
            errors.append(f"{path}/type: unknown loss {loss_type!r}; known: {', '.join(LOSSES.names())}")
            continue
        if name not in LOSSES.get(loss_type).quantities:
            applicable = [n for n in LOSSES.names() if name in LOSSES.get(n).quantities]
            errors.append(f"{path}/type: {loss_type!r} does not apply to {name}; use {', '.join(applicable)}")


def _check_weight(entry: dict, path: str, errors: list[str]) -> None:
    """``losses/<quantity>/weight``: a number (coerced in place, 1 if absent) or a valid ramp."""
    entry.setdefault("weight", 1.0)
    if isinstance(entry["weight"], dict):
        problem = ramp_is_valid(entry["weight"])
        if problem:
            errors.append(f"{path}/weight: {problem} (e.g. {{start: 0.1, end: 1, start_step: 0, end_step: 2000}})")
    else:
        entry["weight"] = check_number(entry["weight"], f"{path}/weight", errors, minimum=0.0)


@dataclass(frozen=True)
class Term:
    """One configured loss: how to get its prediction and target, its function and its weight."""

    name: str
    prediction: Callable[[dict[str, torch.Tensor]], Any]  # a tensor, or a codec's record (KeypointMaps)
    loss: LossFn
    weight: Callable[[int], float]
    target: Callable[[Targets], Any]
    reads_outputs: tuple[str, ...] = ()


def _given_box(function: Callable, takes_box: bool, box: Box) -> Callable:
    """``function`` with the configured object bound as ``box=`` when it takes one, else as it is."""
    return partial(function, box=box) if takes_box else function


def symmetric_targets(target: torch.Tensor, symmetries: np.ndarray) -> torch.Tensor:
    """(B, n) values ending with a quaternion q -> (B, K, n), one per symmetry s_k: the quaternion
    replaced by q * s_k with w >= 0 (the labels' sign), what comes before it kept."""
    products = torch.as_tensor(right_products(symmetries), dtype=target.dtype, device=target.device)
    quaternions = canonical_sign(torch.einsum("kij,bj->bki", products, target[:, -4:]))
    rest = target[:, None, :-4].expand(-1, len(products), -1)
    return torch.cat([rest, quaternions], dim=-1)


def closest_symmetric(loss: LossFn, symmetries: np.ndarray) -> LossFn:
    """``loss`` against the closest symmetric equivalent of each target: the minimum over ``symmetries``
    (K, 4) of ``loss(prediction, target * s_k)``, one batched call on (B, K, n)."""

    def closest(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        targets = symmetric_targets(target, symmetries)
        return loss(prediction[:, None, :].expand_as(targets), targets).amin(dim=1)

    return closest


class Criterion:
    """Weighted sum of the configured per-instance losses, measured on ``box`` (default ``Box()``) and
    taken modulo its symmetries."""

    def __init__(self, losses: dict, network: dict | None = None, box: Box | None = None) -> None:
        box = box or Box()
        self.terms = []
        for name, entry in losses.items():
            quantity = QUANTITIES.get(name, f"losses/{name}")
            if quantity.target is not None and network is None:
                raise ConfigError(f"losses/{name} derives its target from the network config; pass network=")
            loss = LOSSES.get(entry["type"], f"losses/{name}/type")
            function = _given_box(loss.function, loss.takes_box, box)
            if quantity.oriented and not is_identity_only(box.symmetries):  # without: the very same function
                function = closest_symmetric(function, box.symmetries)
            target = quantity.target and _given_box(quantity.target, quantity.takes_box, box)
            self.terms.append(
                Term(
                    name,
                    quantity.prediction or concatenated(quantity.keys),
                    function,
                    weight_schedule(entry["weight"]),
                    target(network) if target is not None else concatenated(quantity.keys),
                    quantity.reads_outputs,
                )
            )
        if not self.terms:
            raise ConfigError("losses: no loss to optimise; configure at least losses/translation")

    @classmethod
    def from_config(cls, config: dict) -> Criterion:
        """The criterion of a validated config's ``losses`` tree for its ``network`` and ``object``."""
        return cls(config["losses"], network=config["network"], box=Box.from_config(config))

    def weights(self, step: int) -> dict[str, float]:
        """Each loss's weight at global step ``step``."""
        return {term.name: term.weight(step) for term in self.terms}

    def __call__(
        self, predictions: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], step: int = 0
    ) -> dict[str, torch.Tensor]:
        """Per-instance values (B,) of each loss and of ``total`` (weights at ``step``)."""
        values = {}
        for term in self.terms:
            given = {**targets, **{key: predictions[key] for key in term.reads_outputs if key in predictions}}
            values[term.name] = term.loss(term.prediction(predictions), term.target(given))
        values["total"] = sum(term.weight(step) * values[term.name] for term in self.terms)
        return values
