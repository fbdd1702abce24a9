"""Losses: per-instance functions (``functions``), the quantities they compare (``quantities``), weights and
ramps (``weights``) and the weighted criterion of the config's ``losses`` tree (``criterion``). Exported here:
what a user's own loss or quantity needs."""

from cubepose.losses.criterion import Criterion
from cubepose.losses.functions import LOSSES, register_loss
from cubepose.losses.quantities import QUANTITIES, Quantity

__all__ = ["LOSSES", "QUANTITIES", "Criterion", "Quantity", "register_loss"]
