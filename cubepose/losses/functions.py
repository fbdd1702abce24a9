"""Per-instance loss functions ``f(prediction, target) -> (B,)``, found by name through ``LOSSES``.

``register_loss`` adds one (a user's own too): the config's ``losses/<quantity>/type`` names it, and the
quantities it applies to are declared with it. Each returns one value per instance; the criterion
(cubepose.losses.criterion) weighs and sums them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import roma
import torch
import torch.nn.functional as F

from cubepose.geometry.object import Box
from cubepose.models.codecs.heatmaps import DisplacementTargets, KeypointMaps, KeypointTargets
from cubepose.models.codecs.zoom import LocatorMaps, LocatorTargets
from cubepose.registry import Registry

LossFn = Callable[[Any, Any], torch.Tensor]  # (prediction, target) -> (B,): tensors, or a codec's typed records


@dataclass(frozen=True)
class Loss:
    """A per-instance loss function and the quantities (``losses/<quantity>``) it applies to;
    ``takes_box``: the Criterion also passes the configured object as ``box=`` (ADD measures on it)."""

    function: LossFn
    quantities: tuple[str, ...]
    takes_box: bool = False


LOSSES: Registry[Loss] = Registry("loss")


def register_loss(name: str, quantities: tuple[str, ...], takes_box: bool = False) -> Callable[[LossFn], LossFn]:
    """Decorator registering a per-instance loss ``f(prediction, target) -> (B,)`` for ``quantities``
    (``takes_box``: ``f(prediction, target, box=...)`` with the configured object)."""

    def add(function: LossFn) -> LossFn:
        LOSSES.register(name)(Loss(function, tuple(quantities), takes_box))
        return function

    return add


COMPONENT_QUANTITIES = ("translation", "orientation", "window")  # where component-wise losses make sense


@register_loss("mse", COMPONENT_QUANTITIES)
def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over components (Unity's loss for both translation and quaternion)."""
    return ((prediction - target) ** 2).mean(dim=-1)


@register_loss("l1", COMPONENT_QUANTITIES)
def l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over components."""
    return (prediction - target).abs().mean(dim=-1)


@register_loss("smooth_l1", COMPONENT_QUANTITIES)
def smooth_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Huber loss (beta 0.01, i.e. 1 cm for translation) averaged over components."""
    return F.smooth_l1_loss(prediction, target, reduction="none", beta=0.01).mean(dim=-1)


@register_loss("sign_invariant", ("orientation",))
def sign_invariant(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Quaternion MSE against the closer of q and -q: both are the same rotation."""
    return torch.minimum(mse(prediction, target), mse(prediction, -target))


GEODESIC_CLAMP = 1 - 1e-7  # keeps acos' gradient finite at a perfect prediction


@register_loss("geodesic", ("orientation",))
def geodesic(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The rotation angle between unit quaternions, 2 acos |<p, q>| (radians; sign-invariant)."""
    dot = (F.normalize(prediction, dim=-1) * target).sum(dim=-1).abs()
    return 2 * torch.acos(dot.clamp(max=GEODESIC_CLAMP))


@register_loss("add", ("pose",), takes_box=True)
def add(prediction: torch.Tensor, target: torch.Tensor, box: Box | None = None) -> torch.Tensor:
    """ADD: mean distance (m) of the object's 8 corners (``box``, default ``Box()``) under the predicted
    and the true pose.

    Poses are (..., 7): translation then quaternion. One loss for both, in metres, so translation
    and rotation errors are weighed by what they do to the cube (sign-invariant by construction).
    """
    corners = torch.as_tensor((box or Box()).corners(), dtype=prediction.dtype, device=prediction.device)

    def place(pose: torch.Tensor) -> torch.Tensor:
        return (
            corners @ roma.unitquat_to_rotmat(F.normalize(pose[..., 3:], dim=-1)).transpose(-1, -2)
            + pose[..., None, :3]
        )

    return (place(prediction) - place(target)).norm(dim=-1).mean(dim=-1)


@register_loss("heatmap", ("keypoints",))
def heatmap(prediction: KeypointMaps, target: KeypointTargets) -> torch.Tensor:
    """A keypoint network's loss: squared heatmap error summed over the grid (DOPE's belief-map loss), averaged
    over the K keypoints, plus the L1 error of the sub-cell offsets (in cells) where they are trained.

    With ``assign_by_shape``, plus the cross-entropy of the symmetry head's G logits against the indices it may
    name, averaged over the cells where the centre's offsets are trained (the head is read at the centre).

    ``prediction``: the network's maps (``KeypointMaps``); ``target``: ``KeypointTargets`` (``keypoints_target``).
    """
    heat = ((prediction.heatmaps - target.heatmaps) ** 2).sum(dim=(-2, -1)).mean(dim=1)
    mask = target.mask.repeat_interleave(2, dim=1)  # (B, 2K, H, W): u and v of each keypoint
    offset_error = (prediction.offsets.flatten(1, 2) - target.offsets.flatten(1, 2)).abs() * mask
    total = heat + offset_error.sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp_min(1)
    if prediction.logits is None:
        return total
    log_probabilities = F.log_softmax(prediction.logits.float(), dim=1)
    right = log_probabilities.masked_fill(target.names < 0.5, float("-inf")).logsumexp(dim=1)  # (B, H, W)
    centre = target.mask[:, 0]  # where the centre's offsets are trained
    return total - (right * centre).sum(dim=(-2, -1)) / centre.sum(dim=(-2, -1)).clamp_min(1)


@register_loss("displacement", ("displacements",))
def displacement(prediction: torch.Tensor, target: DisplacementTargets) -> torch.Tensor:
    """L1 error (in cells) of a several-instance keypoint network's centre-to-keypoint displacements, averaged
    over the cells around each centre where they are trained (the target's mask) and their channels;
    0 for an image without the object. ``prediction`` (B, C, H, W), ``target``: ``DisplacementTargets``."""
    mask = target.mask[:, None]
    error = ((prediction - target.displacements).abs() * mask).sum(dim=(1, 2, 3))
    return error / (mask.sum(dim=(1, 2, 3)) * prediction.shape[1]).clamp_min(1)


@register_loss("detection", ("detection",))
def detection(prediction: LocatorMaps, target: LocatorTargets) -> torch.Tensor:
    """The zoom-in model's stage 1: the squared error of the centre heatmap summed over the grid, plus the L1
    errors of the sub-cell offsets (cells) and of the log apparent size where they are trained (CenterNet's)."""
    heat = ((prediction.heatmap - target.heatmap) ** 2).sum(dim=(1, 2, 3))
    mask = target.mask[:, 0]  # (B, H, W)
    cells = mask.sum(dim=(1, 2)).clamp_min(1)
    offsets = ((prediction.offsets[:, 0] - target.offsets[:, 0]).abs().sum(dim=1) * mask).sum(dim=(1, 2)) / cells
    size = ((prediction.size[:, 0] - target.size).abs() * mask).sum(dim=(1, 2)) / cells
    return heat + offsets + size
