"""What each ``losses/<quantity>`` entry compares, found by name through ``QUANTITIES``: which model outputs,
against which targets (the dataset's own, or one a codec builds), and whether it ends with the orientation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cubepose.models.codecs.targets import (
    Targets,
    displacements_target,
    keypoints_prediction,
    keypoints_target,
    window_target,
)
from cubepose.models.codecs.zoom import locator_prediction, locator_target
from cubepose.registry import Registry


@dataclass(frozen=True)
class Quantity:
    """What a ``losses/<quantity>`` entry compares: model outputs against targets, each (B, n).

    ``keys`` name the model outputs (concatenated), and by default the dataset's targets of the
    same names; ``target`` builds a derived target instead, from the network config (the crop
    window); ``prediction`` selects from the outputs instead of concatenating them. ``takes_box``:
    ``target`` is also given the configured object as ``box=`` (the crop window frames its bounding
    sphere). ``oriented``: the values end with the object's quaternion, so a symmetric object has one
    equally true target per symmetry and the loss is the minimum over them. ``reads_outputs``: model outputs
    the target also depends on, given with the targets where the model has them (the zoom-in model's crop
    windows, which place its keypoints).
    """

    keys: tuple[str, ...]
    target: Callable[..., Callable[[Targets], Any]] | None = None  # a tensor, or a codec's typed record
    prediction: Callable[[dict[str, torch.Tensor]], Any] | None = None
    takes_box: bool = False
    oriented: bool = False
    reads_outputs: tuple[str, ...] = ()


QUANTITIES: Registry[Quantity] = Registry("quantity")

QUANTITIES.register("translation")(Quantity(("translation",)))
QUANTITIES.register("orientation")(Quantity(("quaternion",), oriented=True))
QUANTITIES.register("pose")(Quantity(("translation", "quaternion"), oriented=True))
QUANTITIES.register("window")(Quantity(("window",), target=window_target, takes_box=True))
QUANTITIES.register("keypoints")(
    Quantity(
        ("heatmaps", "offsets"),
        target=keypoints_target,
        prediction=keypoints_prediction,
        takes_box=True,
        reads_outputs=("windows",),
    )
)
QUANTITIES.register("detection")(
    Quantity(
        ("locator_heatmap", "locator_offsets", "locator_size"),
        target=locator_target,
        prediction=locator_prediction,
        takes_box=True,
    )
)
QUANTITIES.register("displacements")(Quantity(("displacements",), target=displacements_target, takes_box=True))
