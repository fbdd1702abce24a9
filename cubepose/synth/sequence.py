"""Image sequences: one scene whose objects move smoothly from frame to frame, for measuring tracking and jitter.

``cubepose generate --sequence MOTION`` samples one scene (the frame-0 draw) and renders frame k at time k / fps:

- ``static``: nothing moves; only the sensor noise is drawn anew each frame (a still camera's jitter);
- ``moving``: each object slides back and forth along the table (a sine of period ``PERIOD`` s, peak speed
  ``speed`` m/s, in its own direction) and turns about the table's normal at ``turn`` deg/s;
- ``crossing``: two objects swap places along the table over the whole sequence, the second one's path ``GAP``
  diameters farther from the camera, so that in the image they cross, the far one behind the near one.

Each frame is labelled as any generated image; the frames also go into one video beside them (MPEG-4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from cubepose.geometry.rotations import axis_angle_quaternions, canonical_sign, quaternion_multiply
from cubepose.synth.scene import Box, Scene

MOTIONS = ("static", "moving", "crossing")
GAP = 1.0  # diameters between the crossing objects' paths: apart enough never to touch, near enough to hide
PERIOD = 4.0  # seconds of one back-and-forth of ``moving``
VIDEO = "sequence.mp4"  # the frames as one MPEG-4 video (as a camera streams), for cubepose predict --video


@dataclass(frozen=True)
class SequenceOptions:
    """How a sequence moves (``--sequence MOTION --fps --speed --turn``)."""

    motion: str = "moving"
    fps: float = 30.0  # frames per second of the sequence's clock
    speed: float = 0.1  # m/s: ``moving``'s peak speed along the table
    turn: float = 30.0  # deg/s: ``moving``'s turn about the table's normal

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise ValueError(f"--sequence must be one of {', '.join(MOTIONS)}, got {self.motion!r}")
        for flag, value, top in (
            ("--fps", self.fps, 1000.0),
            ("--speed", self.speed, 10.0),
            ("--turn", self.turn, 3600.0),
        ):
            if not (math.isfinite(value) and 0 <= value <= top) or (flag == "--fps" and value == 0):
                raise ValueError(
                    f"{flag} must be a number from {'above ' if flag == '--fps' else ''}0 to {top:g}, got {value}"
                )


def sequence_frame(first: Scene, index: int, count: int, options: SequenceOptions) -> Scene:
    """Frame ``index`` of ``count`` of the sequence that starts at scene ``first``."""
    seconds = index / options.fps
    moved = replace(first, noise_seed=(first.noise_seed + 7919 * index) % 2**32)  # fresh sensor noise per frame
    if options.motion == "static" or not first.objects:
        return moved
    if options.motion == "crossing":
        return replace(moved, objects=_crossed(first, index / max(count - 1, 1)))
    return replace(
        moved, objects=[_moving(first, box, number, seconds, options) for number, box in enumerate(first.objects)]
    )


def _along_table(first: Scene, number: int) -> np.ndarray:
    """A unit direction in the table's plane for object ``number``, fixed by the scene."""
    angle = np.random.default_rng([first.noise_seed, number]).uniform(0, 2 * np.pi)
    return _in_plane(first.up, angle)


def _in_plane(up: np.ndarray, angle: float) -> np.ndarray:
    """The unit vector at ``angle`` in the plane normal to ``up``, measured from the camera's x axis projected."""
    x = np.array([1.0, 0.0, 0.0]) - up * up[0]
    x /= np.linalg.norm(x)
    return np.cos(angle) * x + np.sin(angle) * np.cross(up, x)


def _moving(first: Scene, box: Box, number: int, seconds: float, options: SequenceOptions) -> Box:
    """Object ``number`` ``seconds`` into ``moving``: slid along its direction and turned about the normal."""
    amplitude = options.speed * PERIOD / (2 * np.pi)  # a sine of this amplitude peaks at ``speed``
    shift = _along_table(first, number) * amplitude * np.sin(2 * np.pi * seconds / PERIOD)
    turn = axis_angle_quaternions(first.up, np.radians(options.turn) * seconds)
    return replace(
        box, translation=box.translation + shift, quaternion=canonical_sign(quaternion_multiply(turn, box.quaternion))
    )


def _crossed(first: Scene, progress: float) -> list[Box]:
    """The first two objects ``progress`` (0-1) of the way along their swap, the second ``GAP`` diameters farther
    along the table from the camera; the rest stay where they are."""
    if len(first.objects) < 2:
        raise ValueError("--sequence crossing moves two objects: give --objects 2 2")
    a, b = first.objects[:2]
    ease = (1 - np.cos(np.pi * progress)) / 2  # starts and stops smoothly
    away = np.array([0.0, 0.0, 1.0]) - first.up * first.up[2]  # the viewing direction along the table
    away *= GAP * np.linalg.norm(b.size) / np.linalg.norm(away)
    start_a, start_b = a.translation, b.translation + away
    moved_a = replace(a, translation=start_a + (b.translation - start_a) * ease)
    moved_b = replace(b, translation=start_b + (a.translation + away - start_b) * ease)
    return [moved_a, moved_b, *first.objects[2:]]
