"""Temporal smoothing of tracked poses: the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012), batched.

A first-order low-pass whose cut-off rises with the signal's speed: a still object's jitter is filtered hard
(``min_cutoff``), a moving one is followed with little lag (``beta`` per unit of speed). Translation is filtered
per axis, each with its cut-off from its own speed in m/s (a PnP pose's depth is several times noisier than its
sideways position, and must not open the other axes' filters); orientation as the quaternion's four components,
first turned to the sign and the symmetry-equivalent closest to the filtered one (a symmetric object's pose may
come back as any equivalent), renormalised, with the cut-off from the angular speed in rad/s. Written here
rather than taken from a package: PyPI's ``OneEuroFilter`` filters one scalar per object and call, and tracks
need batches of vectors and rotations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cubepose.geometry.rotations import canonical_sign
from cubepose.geometry.symmetries import symmetric_equivalents


@dataclass(frozen=True)
class SmoothingSettings:
    """The filter's settings (``cubepose predict --smooth``): cut-offs in Hz, betas per m/s and per rad/s."""

    min_cutoff: float = 1.0  # Hz: the cut-off of a still object; lower filters jitter harder, with more lag
    beta_translation: float = 10.0  # Hz per m/s: how fast the cut-off opens as the object moves
    beta_rotation: float = 5.0  # Hz per rad/s: likewise for turning
    derivative_cutoff: float = 1.0  # Hz: the cut-off of the speed estimate itself

    def __post_init__(self) -> None:
        values = (self.min_cutoff, self.beta_translation, self.beta_rotation, self.derivative_cutoff)
        if not all(math.isfinite(v) for v in values) or self.min_cutoff <= 0 or self.derivative_cutoff <= 0:
            raise ValueError(f"the smoothing cut-offs must be finite and above 0 Hz and the betas finite, got {values}")
        if self.beta_translation < 0 or self.beta_rotation < 0:
            raise ValueError(f"the smoothing betas must be at least 0, got {values[1:3]}")


STATE = 11  # columns of a track's filter state: translation (3), quaternion (4), speeds of x, y, z and turning


def _alpha(cutoff: np.ndarray | float, elapsed: np.ndarray) -> np.ndarray:
    """The low-pass weight of the new sample for ``cutoff`` (Hz) after ``elapsed`` seconds."""
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / elapsed)


class PoseSmoother:
    """One-Euro state of several tracks' poses, updated together (rows of the same track order each call)."""

    def __init__(self, settings: SmoothingSettings, symmetries: np.ndarray | None = None) -> None:
        self.settings = settings
        self.symmetries = symmetries

    def start(self, translation: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
        """The state (T, STATE) of tracks first seen at these poses: translation, quaternion, the speeds (of x, y,
        z and of turning) zero."""
        return np.concatenate([translation, canonical_sign(quaternion), np.zeros((len(translation), 4))], axis=1)

    def update(
        self, state: np.ndarray, translation: np.ndarray, quaternion: np.ndarray, elapsed: np.ndarray
    ) -> np.ndarray:
        """The state (T, STATE) after observing poses (T, 3), (T, 4) ``elapsed`` (T,) seconds after the last; its
        first 7 columns are the smoothed translation and quaternion (x, y, z, w, w >= 0)."""
        settings = self.settings
        elapsed = np.maximum(np.asarray(elapsed, np.float64), 1e-6)[:, None]
        previous_t, previous_q, speeds = state[:, :3], state[:, 3:7], state[:, 7:]
        quaternion = self._nearest(quaternion, previous_q)
        turned = 2 * np.arccos(np.clip(np.abs((quaternion * previous_q).sum(axis=1, keepdims=True)), 0, 1))
        raw_speed = np.concatenate([np.abs(translation - previous_t), turned], axis=1) / elapsed  # (T, 4)
        speeds = speeds + _alpha(settings.derivative_cutoff, elapsed) * (raw_speed - speeds)
        betas = np.array([settings.beta_translation] * 3 + [settings.beta_rotation])
        weights = _alpha(settings.min_cutoff + betas * speeds, elapsed)  # (T, 4): x, y, z, turning
        smoothed_t = previous_t + weights[:, :3] * (translation - previous_t)
        smoothed_q = previous_q + weights[:, 3:] * (quaternion - previous_q)
        smoothed_q = canonical_sign(smoothed_q / np.linalg.norm(smoothed_q, axis=1, keepdims=True))
        return np.concatenate([smoothed_t, smoothed_q, speeds], axis=1)

    def _nearest(self, quaternion: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Of each quaternion's equivalents (its sign, the object's symmetries), the one closest to ``reference``."""
        candidates = (
            quaternion[:, None] if self.symmetries is None else symmetric_equivalents(quaternion, self.symmetries)
        )
        dots = (candidates * reference[:, None]).sum(axis=-1)  # (T, K)
        best = np.abs(dots).argmax(axis=1)
        chosen = candidates[np.arange(len(quaternion)), best]
        return chosen * np.sign(dots[np.arange(len(quaternion)), best] + 1e-12)[:, None]
