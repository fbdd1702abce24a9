"""What a network declares for its export (``ExportSpec``), so that cubepose.inference.export writes any network
through this one interface (``Exportable``) and never reads its architecture.

A network's ``export_spec()`` gives the module to trace, the names and meanings of what it returns and the
network's own entries of the contract note written beside the file (for a keypoint model: how its outputs become
a pose); the export adds the input, the preprocessing, the step and the training camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from cubepose.errors import CubeposeError


@dataclass(frozen=True)
class ExportSpec:
    """A network's export: ``module`` maps prepared images (N, 3, S, S) to a tuple of tensors, one per entry of
    ``outputs`` (name: shape and meaning, in order); ``contract`` holds the network's entries of the note."""

    module: nn.Module
    outputs: dict[str, str]
    contract: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Exportable(Protocol):
    """A network that can be exported: the one method export asks it."""

    def export_spec(self) -> ExportSpec:
        """What an export of the network, as it is now, traces and declares."""
        ...


class ExportedOutputs(nn.Module):
    """A pose network's ``exported`` outputs as a tuple, which TorchScript and ONNX graphs carry better than a dict."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The network's raw exported outputs for ``images``."""
        return self.model.exported(images)


def export_spec_of(model: nn.Module) -> ExportSpec:
    """``model.export_spec()``; a network without one is refused, naming the method to add."""
    if not isinstance(model, Exportable):
        raise CubeposeError(
            f"{type(model).__name__} cannot be exported: give it export_spec() returning an ExportSpec "
            "(cubepose.models.export_spec), as PoseNet and KeypointNet do"
        )
    return model.export_spec()
