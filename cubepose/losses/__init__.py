"""Losses: per-instance functions (``LOSSES``, ``register_loss``), the quantities they compare
(``QUANTITIES``), weights and ramps, and the weighted criterion built from the config's ``losses`` tree."""

from cubepose.losses.criterion import Criterion, check_losses, closest_symmetric, symmetric_targets
from cubepose.losses.functions import (
    LOSSES,
    Loss,
    add,
    displacement,
    geodesic,
    heatmap,
    l1,
    mse,
    register_loss,
    sign_invariant,
    smooth_l1,
)
from cubepose.losses.quantities import QUANTITIES, Quantity
from cubepose.losses.weights import Ramp, ramp_is_valid, weight_schedule

__all__ = [
    "LOSSES",
    "QUANTITIES",
    "Criterion",
    "Loss",
    "Quantity",
    "Ramp",
    "add",
    "check_losses",
    "closest_symmetric",
    "displacement",
    "geodesic",
    "heatmap",
    "l1",
    "mse",
    "ramp_is_valid",
    "register_loss",
    "sign_invariant",
    "smooth_l1",
    "symmetric_targets",
    "weight_schedule",
]
