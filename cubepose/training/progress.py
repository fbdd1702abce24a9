"""How far a training run is and how long it will take: one line every ``progress_freq`` steps and after
each evaluation, with step, images/s, elapsed and estimated time left, the last validation headline and
the best so far.

The estimate is (steps left) x (seconds per training step) + (evaluations left) x (seconds per evaluation):
a step's time is the mean gap between consecutive steps over the last ``STEP_WINDOW`` steps, epoch
boundaries left out; an evaluation's is the mean extra time of the epoch boundaries seen (evaluation,
checkpoint, the loaders' restart), the first one dropped once there are others (it carries one-off
costs: imports, the validation loader's start), so the last evaluation, which ends the run, is counted
too. Before the first evaluation has run, it is guessed as a forward pass over the validation split: a
third of a training step per image.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cubepose.evaluation.summary import short_headline

BEST_BY = "accuracy_5cm_5deg"  # the validation metric "best so far" names (higher is better)
TIE_BREAK = "add_cm_mean"  # then lower mean ADD
STEP_WINDOW = 200  # recent steps the time per step is averaged over (warm-up and speed changes fade out)
FORWARD_SHARE = 3  # a training step (forward, backward, update) takes about 3 forward passes


def format_duration(seconds: float) -> str:
    """Seconds as '1h02m', '3m05s' or '42.5s'; '?' while unknown."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{max(0.0, seconds):.1f}s"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


@dataclass
class Validation:
    """One evaluation's step and metrics."""

    step: int
    metrics: Mapping[str, Any]

    def rank(self) -> tuple[float, float]:
        """Higher is better: the share within 5 cm and 5 deg, then the lower mean ADD (NaN ranks last)."""
        share, add = self.metrics.get(BEST_BY), self.metrics.get(TIE_BREAK)
        share = share if isinstance(share, (int, float)) and math.isfinite(share) else -math.inf
        add = add if isinstance(add, (int, float)) and math.isfinite(add) else math.inf
        return share, -add


class TrainingProgress:
    """Tracks a run of ``total_steps`` steps of ``images_per_step`` images, ``steps_per_epoch`` per epoch
    (an evaluation of ``validation_images`` after each epoch and at the end), and words its progress;
    ``every``: a line every so many steps (None: after evaluations only)."""

    def __init__(
        self,
        total_steps: int,
        steps_per_epoch: int,
        images_per_step: int,
        every: int | None,
        validation_images: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_steps = total_steps
        self.validation_images = validation_images
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.images_per_step = images_per_step
        self.every = every
        self.clock = clock
        self.started = clock()
        self.step = 0
        self.first_step: int | None = None  # the step the run (re)started at
        self.last_time: float | None = None
        self.step_seconds: deque[float] = deque(maxlen=STEP_WINDOW)
        self.train_seconds = 0.0  # all steps' time since the start, for the throughput
        self.train_steps = 0
        self.boundary_seconds: list[float] = []
        self.boundary_pending = False
        self.boundaries_seen = 0
        self.last: Validation | None = None
        self.best: Validation | None = None

    def start(self, step: int) -> None:
        """The run (re)starts at global step ``step``: the clock and the counts begin here."""
        self.started, self.step, self.first_step, self.last_time = self.clock(), step, step, None

    def step_done(self, step: int) -> str | None:
        """Record that training step ``step`` (the global step before it) ended; the progress line when one
        is due."""
        now = self.clock()
        if self.first_step is None:
            self.start(step)
        if self.last_time is not None:
            gap = now - self.last_time
            if self.boundary_pending:
                step_time = self.seconds_per_step()
                self.boundary_seconds.append(max(0.0, gap - (step_time if math.isfinite(step_time) else 0.0)))
            else:
                self.step_seconds.append(gap)
                self.train_seconds += gap
                self.train_steps += 1
        self.boundary_pending = False
        self.last_time, self.step = now, step + 1
        due = self.every is not None and self.step % self.every == 0 and self.step < self.total_steps
        return self.line() if due else None

    def epoch_ended(self) -> None:
        """An epoch ended: the time until the next step is evaluation and restart, not training."""
        self.boundary_pending = True
        self.boundaries_seen += 1

    def evaluated(self, step: int, metrics: Mapping[str, Any]) -> str:
        """Record a validation's metrics at ``step``; the progress line with its headline."""
        self.last = Validation(step, dict(metrics))
        if self.best is None or self.last.rank() > self.best.rank():
            self.best = self.last
        return self.line()

    def seconds_per_step(self) -> float:
        """Mean seconds of the recent training steps (NaN before two steps)."""
        return sum(self.step_seconds) / len(self.step_seconds) if self.step_seconds else math.nan

    def seconds_per_evaluation(self) -> float:
        """Mean extra seconds of the epoch boundaries seen, the first dropped once there are others; before
        any, the guess of a forward pass over the validation images (a third of a training step per image)."""
        if self.boundary_seconds:
            seen = self.boundary_seconds[1:] or self.boundary_seconds
            return sum(seen) / len(seen)
        guess = self.validation_images / max(1, self.images_per_step) * self.seconds_per_step() / FORWARD_SHARE
        return guess if math.isfinite(guess) else 0.0

    def evaluations_left(self) -> int:
        """Epoch boundaries (each with an evaluation) between now and the end of the run."""
        first_epoch = (self.first_step or 0) // self.steps_per_epoch
        ends = math.ceil(self.total_steps / self.steps_per_epoch) - first_epoch
        return max(0, ends - self.boundaries_seen)

    def seconds_left(self) -> float:
        """The estimate of the time until the run ends (NaN before two steps)."""
        steps_left = max(0, self.total_steps - self.step)
        return steps_left * self.seconds_per_step() + self.evaluations_left() * self.seconds_per_evaluation()

    def images_per_second(self) -> float:
        """Training throughput since the start (images of all ranks per second of training steps)."""
        return self.images_per_step * self.train_steps / self.train_seconds if self.train_steps else math.nan

    def scalars(self) -> dict[str, float]:
        """The line's numbers for TensorBoard (``progress/<name>``)."""
        scalars = {
            "images_per_second": self.images_per_second(),
            "elapsed_minutes": (self.clock() - self.started) / 60,
            "minutes_left": self.seconds_left() / 60,
        }
        if self.best is not None:
            scalars[f"best_{BEST_BY}"] = self.best.rank()[0]
        return {name: value for name, value in scalars.items() if math.isfinite(value)}

    def line(self) -> str:
        """'step 500/2000 (25%) | 41.2 images/s | elapsed 3m12s | left ~9m40s | validation at step 400: ...
        | best: 92.0 % within 5 cm and 5 deg at step 300'."""
        share = 100 * self.step / self.total_steps if self.total_steps else 100.0
        parts = [
            f"step {self.step}/{self.total_steps} ({share:.0f}%)",
            f"{self.images_per_second():.1f} images/s",
            f"elapsed {format_duration(self.clock() - self.started)}",
            f"left ~{format_duration(self.seconds_left())}",
        ]
        if self.last is not None:
            parts.append(f"validation at step {self.last.step}: {short_headline(self.last.metrics)}")
        if self.best is not None and math.isfinite(self.best.rank()[0]):
            parts.append(f"best: {100 * self.best.rank()[0]:.1f} % within 5 cm and 5 deg at step {self.best.step}")
        return " | ".join(parts)
