"""Loss weights: a constant or a linear ramp ``{start, end, start_step, end_step}``, as edflow's VUNet ramps
its KL weight."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


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
