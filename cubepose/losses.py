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

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import roma
import torch
import torch.nn.functional as F

from cubepose.config import check_number, component_check, validate_config
from cubepose.errors import ConfigError
from cubepose.heatmaps import displacement_targets, keypoint_targets, nearest_centres
from cubepose.keypoints import canonical_assignment, keypoint_pixels, object_keypoints, view_canonical
from cubepose.models.crop import cube_windows
from cubepose.models.rotations import canonical_sign
from cubepose.object_model import Box
from cubepose.registry import Registry
from cubepose.symmetries import equivalent_classes, is_identity_only, right_products

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Targets = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Loss:
    """A per-instance loss function and the quantities (``losses/<quantity>``) it applies to;
    ``takes_box``: the Criterion also passes the configured object as ``box=`` (ADD measures on it)."""

    function: LossFn
    quantities: tuple[str, ...]
    takes_box: bool = False


@dataclass(frozen=True)
class Quantity:
    """What a ``losses/<quantity>`` entry compares: model outputs against targets, each (B, n).

    ``keys`` name the model outputs (concatenated), and by default the dataset's targets of the
    same names; ``target`` builds a derived target instead, from the network config (the crop
    window); ``prediction`` selects from the outputs instead of concatenating them. ``takes_box``:
    ``target`` is also given the configured object as ``box=`` (the crop window frames its bounding
    sphere). ``oriented``: the values end with the object's quaternion, so a symmetric object has one
    equally true target per symmetry and the loss is the minimum over them.
    """

    keys: tuple[str, ...]
    target: Callable[..., Callable[[Targets], torch.Tensor]] | None = None
    prediction: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None
    takes_box: bool = False
    oriented: bool = False


LOSSES: Registry[Loss] = Registry("loss")
QUANTITIES: Registry[Quantity] = Registry("quantity")


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
def heatmap(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A keypoint network's loss: squared heatmap error summed over the grid (DOPE's belief-map loss), averaged
    over the K keypoints, plus the L1 error of the sub-cell offsets (in cells) where they are trained.

    With ``assign_by_shape``, plus the cross-entropy of the symmetry head's G logits against the indices it may
    name, averaged over the cells where the centre's offsets are trained (the head is read at the centre).

    ``prediction`` (B, 3K [+ G], H, W): heatmaps, then offsets (u, v per keypoint) [, logits]; ``target``
    (B, 4K [+ G], H, W): the same, then the offsets' mask [, 1 for each right index] (``keypoints_target``).
    """
    k = target.shape[1] - prediction.shape[1]  # the target has one mask channel per keypoint more
    heat = ((prediction[:, :k] - target[:, :k]) ** 2).sum(dim=(-2, -1)).mean(dim=1)
    mask = target[:, 3 * k : 4 * k].repeat_interleave(2, dim=1)
    offset_error = (prediction[:, k : 3 * k] - target[:, k : 3 * k]).abs() * mask
    total = heat + offset_error.sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp_min(1)
    if prediction.shape[1] == 3 * k:
        return total
    log_probabilities = F.log_softmax(prediction[:, 3 * k :].float(), dim=1)
    right = log_probabilities.masked_fill(target[:, 4 * k :] < 0.5, float("-inf")).logsumexp(dim=1)  # (B, H, W)
    centre = target[:, 3 * k]  # where the centre's offsets are trained
    return total - (right * centre).sum(dim=(-2, -1)) / centre.sum(dim=(-2, -1)).clamp_min(1)


@register_loss("displacement", ("displacements",))
def displacement(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 error (in cells) of a several-instance keypoint network's centre-to-keypoint displacements, averaged
    over the cells around each centre where they are trained (the target's last channel) and their channels;
    0 for an image without the object. ``prediction`` (B, C, H, W), ``target`` (B, C + 1, H, W)."""
    mask = target[:, -1:]
    error = ((prediction - target[:, :-1]).abs() * mask).sum(dim=(1, 2, 3))
    return error / (mask.sum(dim=(1, 2, 3)) * prediction.shape[1]).clamp_min(1)


@dataclass(frozen=True)
class Ramp:
    """A loss weight going linearly from ``start`` (until ``start_step``) to ``end`` (from ``end_step``)."""

    start: float
    end: float
    start_step: int
    end_step: int

    def __call__(self, step: int) -> float:
        if step <= self.start_step or self.end_step <= self.start_step:
            return self.start if step <= self.start_step else self.end
        share = min(1.0, (step - self.start_step) / (self.end_step - self.start_step))
        return self.start + share * (self.end - self.start)


def weight_schedule(weight: float | dict) -> Callable[[int], float]:
    """A constant weight, or the Ramp a ``{start, end, start_step, end_step}`` mapping describes."""
    if isinstance(weight, dict):
        return Ramp(float(weight["start"]), float(weight["end"]), int(weight["start_step"]), int(weight["end_step"]))
    return lambda step, value=float(weight): value


def concatenated(keys: tuple[str, ...]) -> Callable[[Targets], torch.Tensor]:
    """A quantity's model outputs, or the targets a dataset provides: its keys concatenated."""
    return lambda targets: torch.cat([targets[key] for key in keys], dim=-1)


def window_target(network: dict, box: Box | None = None) -> Callable[[Targets], torch.Tensor]:
    """The crop window a two-stage model should predict, from the true translation, the camera and the object."""
    image_size, margin = network["image_size"], network["crop"]["margin"]

    def target(targets: Targets) -> torch.Tensor:
        if "camera" not in targets:
            raise ConfigError("losses/window needs each example's camera; the dataset returned none")
        return cube_windows(targets["translation"], targets["camera"], image_size, margin, box)

    return target


def instance_poses(targets: Targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every instance's translation (B, M, 3) and quaternion (B, M, 4), and which slots hold one (B, M): the
    dataset's ``translations``, ``quaternions`` and ``instance_count`` (``data/max_instances`` above 1), else
    its one ``translation`` and ``quaternion`` as M = 1."""
    if "translations" not in targets:
        translation = targets["translation"]
        present = torch.ones(len(translation), 1, dtype=torch.bool, device=translation.device)
        return translation[:, None], targets["quaternion"][:, None], present
    translations = targets["translations"]
    slots = torch.arange(translations.shape[1], device=translations.device)
    return translations, targets["quaternions"], slots < targets["instance_count"][:, None]


def _instance_keypoints(
    targets: Targets, box: Box, points: torch.Tensor, by_shape: bool, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The keypoints (B, M, K, 2) of every instance in input pixels, each turned to its view-canonical
    orientation first (``keypoints_target``), which slots count (B, M), and with ``by_shape`` the index (B, M)
    of the shape symmetry that turn took."""
    if "camera" not in targets:
        raise ConfigError(f"losses/{name} needs each example's camera; the dataset returned none")
    translations, quaternions, present = instance_poses(targets)
    batch, slots = present.shape
    translation, quaternion = translations.flatten(0, 1), quaternions.flatten(0, 1)
    index = None
    if by_shape:
        quaternion, index = canonical_assignment(quaternion, translation, box.shape_symmetries)
        index = index.unflatten(0, (batch, slots))
    else:
        quaternion = view_canonical(quaternion, translation, box.symmetries)
    camera = targets["camera"].repeat_interleave(slots, dim=0)
    pixels = keypoint_pixels(points, translation, quaternion, camera).unflatten(0, (batch, slots))
    return pixels, present, index


def keypoints_target(network: dict, box: Box | None = None) -> Callable[[Targets], torch.Tensor]:
    """What a keypoint network should predict (cubepose.heatmaps), packed (B, 4K [+ G], H, W) as ``heatmap``
    reads it: the keypoints of ``box`` projected with each example's camera, the object turned to its
    view-canonical orientation first (under its symmetries; with ``assign_by_shape`` under the bare box's G
    shape symmetries, followed by G channels that are 1 for the symmetry indices the head may name, those of
    the instance whose centre is nearest). Several instances (``instance_poses``) share the maps."""
    box = box or Box()
    points = torch.as_tensor(object_keypoints(box), dtype=torch.float32)
    settings = network["keypoints"]
    size, stride, radius = network["image_size"], settings["stride"], settings["offset_radius"]
    by_shape = settings["assign_by_shape"]
    if by_shape:
        right_names = torch.as_tensor(equivalent_classes(box.shape_symmetries, box.symmetries), dtype=torch.float32)

    def target(targets: Targets) -> torch.Tensor:
        pixels, present, index = _instance_keypoints(targets, box, points, by_shape, "keypoints")
        heatmaps, offsets, mask = keypoint_targets(pixels, size, stride, settings["sigma"], radius, present)
        packed = [heatmaps, offsets.flatten(1, 2), mask]
        if by_shape:
            nearest, _ = nearest_centres(pixels, present, size, stride, radius)  # (B, H, W) slot index
            names = right_names.to(mask.device)[index]  # (B, M, G)
            packed.append(
                names.gather(1, nearest.flatten(1)[..., None].expand(-1, -1, names.shape[-1]))
                .transpose(1, 2)
                .unflatten(2, nearest.shape[1:])
            )
        return torch.cat(packed, dim=1)

    return target


def displacements_target(network: dict, box: Box | None = None) -> Callable[[Targets], torch.Tensor]:
    """What tells instances apart (cubepose.heatmaps.displacement_targets), packed (B, 2 (K - 1) + 1, H, W) as
    ``displacement`` reads it: the displacements from the cells around each centre to its other keypoints,
    then the mask of those cells."""
    box = box or Box()
    points = torch.as_tensor(object_keypoints(box), dtype=torch.float32)
    settings = network["keypoints"]

    def target(targets: Targets) -> torch.Tensor:
        pixels, present, _ = _instance_keypoints(targets, box, points, settings["assign_by_shape"], "displacements")
        size, stride, radius = network["image_size"], settings["stride"], settings["offset_radius"]
        displacements, mask = displacement_targets(pixels, present, size, stride, radius)
        return torch.cat([displacements, mask[:, None]], dim=1)

    return target


def keypoints_prediction(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """A keypoint network's outputs packed (B, 3K [+ G], H, W) as ``heatmap`` reads them."""
    logits = [outputs["symmetry_logits"]] if "symmetry_logits" in outputs else []
    return torch.cat([outputs["heatmaps"], outputs["offsets"].flatten(1, 2), *logits], dim=1)


QUANTITIES.register("translation")(Quantity(("translation",)))
QUANTITIES.register("orientation")(Quantity(("quaternion",), oriented=True))
QUANTITIES.register("pose")(Quantity(("translation", "quaternion"), oriented=True))
QUANTITIES.register("window")(Quantity(("window",), target=window_target, takes_box=True))
QUANTITIES.register("keypoints")(
    Quantity(("heatmaps", "offsets"), target=keypoints_target, prediction=keypoints_prediction, takes_box=True)
)
QUANTITIES.register("displacements")(Quantity(("displacements",), target=displacements_target, takes_box=True))


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
    prediction: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    loss: LossFn
    weight: Callable[[int], float]
    target: Callable[[Targets], torch.Tensor]


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
                )
            )
        if not self.terms:
            raise ConfigError("losses: no loss to optimise; configure at least losses/translation")

    @classmethod
    def from_config(cls, config: dict) -> Criterion:
        """The criterion of a config's ``losses`` tree (validated here) for its ``network`` and ``object``."""
        network = validate_config(config)["network"]
        return cls(config["losses"], network=network, box=Box.from_config(config))

    def weights(self, step: int) -> dict[str, float]:
        """Each loss's weight at global step ``step``."""
        return {term.name: term.weight(step) for term in self.terms}

    def __call__(
        self, predictions: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], step: int = 0
    ) -> dict[str, torch.Tensor]:
        """Per-instance values (B,) of each loss and of ``total`` (weights at ``step``)."""
        values = {}
        for term in self.terms:
            values[term.name] = term.loss(term.prediction(predictions), term.target(targets))
        values["total"] = sum(term.weight(step) * values[term.name] for term in self.terms)
        return values


def ramp_is_valid(weight: dict) -> str | None:
    """Why a ramp mapping is unusable, or None; names the offending ramp key.

    Every value must be a finite number >= 0: a NaN or infinite weight makes the total loss
    non-finite at the first step it applies, and a negative one rewards the error.
    """
    keys = ("start", "end", "start_step", "end_step")
    if set(weight) != set(keys):
        return f"a ramp takes exactly {', '.join(sorted(keys))}, got {', '.join(sorted(map(str, weight)))}"
    for key in keys:
        try:
            if isinstance(weight[key], bool):
                raise TypeError
            number = float(weight[key])
        except (TypeError, ValueError):
            return f"ramp value {key}: {weight[key]!r} is not a number"
        if not math.isfinite(number) or number < 0:
            return f"ramp value {key}: {weight[key]!r} must be a finite number >= 0"
    return None
