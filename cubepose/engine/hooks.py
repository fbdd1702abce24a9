"""edflow hooks cubepose adds: the checkpoint hook that always keeps the last training step, and the hook
that feeds the training progress line."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edflow.hooks.checkpoint_hooks.lambda_checkpoint_hook import LambdaCheckpointHook
from edflow.hooks.hook import Hook

from cubepose.training.progress import TrainingProgress


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


class ProgressHook(Hook):
    """Feeds a TrainingProgress each training step's end and each epoch's end; ``say`` gets each line due
    (every ``progress_freq`` steps)."""

    def __init__(self, progress: TrainingProgress, step_getter: Callable[[], int], say: Callable[[str], None]) -> None:
        super().__init__()
        self.progress = progress
        self.step_getter = step_getter
        self.say = say

    def after_step(self, step: int, last_results: Any) -> None:
        line = self.progress.step_done(self.step_getter())
        if line is not None:
            self.say(line)

    def after_epoch(self, epoch: int) -> None:
        self.progress.epoch_ended()
