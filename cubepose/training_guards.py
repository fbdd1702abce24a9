"""Guards around edflow's training loop: what stops a diverged run, and which checkpoints may exist.

A non-finite loss stops training with ``TrainingDivergedError`` naming the step, the loss terms
and the likely cause; no checkpoint is written from non-finite weights; ``CheckpointHook`` (edflow's
checkpoint hook, extended) always saves the last training step. The Iterator wires these in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edflow.hooks.checkpoint_hooks.lambda_checkpoint_hook import LambdaCheckpointHook

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


class CheckpointHook(LambdaCheckpointHook):
    """edflow's LambdaCheckpointHook, plus: the last training step is always saved (edflow saves
    after an epoch only when ``ckpt_freq`` is null, so ``--num_steps 7 --ckpt_freq 3`` kept only
    model-3 and model-6 although model-7's weights were evaluated), and a step already on disk
    (saved or restored in this process) is not written again.

    ``save(path)`` (Iterator.save) returns False when it refuses a non-finite state; such a
    step is not recorded as saved. ``check_state`` runs first at each epoch's end, before edflow's
    evaluation hooks, and raises when the weights cannot be used.
    """

    def __init__(
        self, *args: Any, is_last_epoch: Callable[[int], bool], check_state: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.is_last_epoch = is_last_epoch
        self.check_state = check_state
        self.saved: str | None = None  # normalised path of the checkpoint the weights were last written to / read from

    def after_epoch(self, epoch: int) -> None:
        """Check the weights, edflow's per-epoch save (ckpt_freq null), then the final step's save."""
        self.check_state()
        super().after_epoch(epoch)
        if self.is_last_epoch(epoch):
            self.save(force_active=True)

    def save(self, force_active: bool = False) -> None:
        """Write model-<global step>.ckpt unless that exact state is already on disk."""
        if not (self._active or force_active):
            return
        path = self.savename.format(self.global_step_getter())
        if os.path.normpath(path) == self.saved:
            return
        if self._save(path):
            self.saved = os.path.normpath(path)
            self.logger.info("Saved model to %s", path)

    def __call__(self, checkpoint: str) -> None:
        """Restore (edflow's behaviour) and remember the file, so that it is not rewritten unchanged."""
        super().__call__(checkpoint)
        self.saved = os.path.normpath(checkpoint)

    def latest(self) -> str | None:
        """The newest checkpoint of this run (highest step), or the one restored; None if there is none."""
        steps = {}
        for path in Path(self.root).glob("model-*.ckpt"):
            step = path.stem.rsplit("-", 1)[1]
            if step.isdigit():
                steps[int(step)] = str(path)
        return steps[max(steps)] if steps else self.saved


def kept_checkpoint_sentence(checkpoint: str | None) -> str:
    """The sentence naming the checkpoint a stopped run keeps."""
    if checkpoint is None:
        return "No checkpoint was written: the run holds no finite trained weights."
    return f"The last good checkpoint is {checkpoint} (resume with -p <run> -t once fixed)."
