"""Guards around the training loop: what stops a diverged run, and which checkpoints may exist.

A non-finite loss stops training with ``TrainingDivergedError`` naming the step, the loss terms
and the likely cause; no checkpoint is written from non-finite weights. The Iterator wires these in,
with cubepose.engine.hooks.CheckpointHook, which always saves the last training step.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from cubepose.errors import CubeposeError


class TrainingDivergedError(CubeposeError):
    """Training produced a NaN or infinite loss (or weights): the run stops before saving or evaluating it."""


def non_finite_names(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or inf (one device sync for all of them)."""
    named = [(name, t) for name, t in tensors.items() if torch.is_tensor(t) and t.is_floating_point()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).tolist()
    return [name for (name, _), ok in zip(named, finite, strict=True) if not ok]


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state (Adam's moments) as ``optimizer/<index>/<key>`` tensors."""
    return {
        f"optimizer/{index}/{key}": value
        for index, state in optimizer.state_dict()["state"].items()
        for key, value in state.items()
        if torch.is_tensor(value)
    }


def divergence_message(
    step: int, losses: dict[str, np.ndarray], label_ok: np.ndarray, indices: np.ndarray | None, config: dict
) -> str:
    """Why training stops at ``step``: the non-finite loss terms and the likely cause with its fix."""
    terms = [name for name, values in losses.items() if name != "total" and not np.isfinite(values).all()]
    named = ", ".join(terms) if terms else "total (the weighted sum overflowed)"
    message = f"training stopped at global step {step}: the loss is not finite ({named})"
    if not label_ok.all():
        bad = np.flatnonzero(~label_ok) if indices is None else np.asarray(indices)[~label_ok]
        examples = ", ".join(str(int(i)) for i in bad[:10])
        return (
            f"{message}; the labels of training examples {examples} are not finite: check the data with "
            f"`cubepose inspect {config['data']['train']['root']}` and fix or remove those captures"
        )
    if not terms:
        return f"{message}; the loss weights are too large: lower losses/<quantity>/weight"
    lr = config["optimizer"]["lr"]
    return (
        f"{message}; the model diverged, most likely because the learning rate optimizer/lr {lr:g} is too "
        f"high: lower it (e.g. --optimizer/lr {lr / 10:g}) or set optimizer/clip_grad_norm. If it fails at "
        f"the first steps whatever the rate, check the labels with `cubepose inspect {config['data']['train']['root']}`"
    )


def kept_checkpoint_sentence(checkpoint: str | None) -> str:
    """The sentence naming the checkpoint a stopped run keeps."""
    if checkpoint is None:
        return "No checkpoint was written: the run holds no finite trained weights."
    return f"The last good checkpoint is {checkpoint} (resume with -p <run> -t once fixed)."
