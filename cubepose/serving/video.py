"""Poses of every frame of a video file or camera device: JSON records, an optional overlay video, tracking.

``predict_stream`` reads a ``VideoSource`` and yields one record per frame, ``{"frame", "timestamp", "poses"}``
(or ``"error"``), the poses as ``cubepose predict`` prints them. Without tracking, file frames are predicted in
batches of the predictor's batch size and a device's one by one (the newest frame, never a backlog); with a
``Tracker`` each frame goes through it, and its poses carry track ids. ``draw_poses`` draws each pose's box and
axes where the camera (with its lens) sees them, for the overlay video.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from cubepose.geometry.camera import Camera
from cubepose.geometry.object import Box
from cubepose.inference.predictor import PosePredictor, instance_records
from cubepose.io.video import VideoSource, VideoWriter
from cubepose.serving.outlines import pose_outlines
from cubepose.serving.tracking import PredictorStages, Tracker, TrackerSettings

logger = logging.getLogger(__name__)

FPS_LOG_SECONDS = 5.0  # a live stream logs its frame rate this often
AXIS_COLOURS = ((230, 40, 40), (40, 200, 60), (50, 90, 240))  # x red, y green, z blue (RGB)
TRACK_COLOURS = ((255, 200, 0), (0, 220, 255), (255, 90, 200), (160, 255, 80), (255, 140, 40), (150, 120, 255))
WITHHELD_COLOUR = (140, 140, 140)
SUBPIXEL_BITS = 4  # cv2 draws at 1/16 px


@dataclass(frozen=True)
class StreamSettings:
    """What ``predict_stream`` does beside predicting: the overlay video and tracking (None: neither)."""

    overlay: str | None = None
    tracking: TrackerSettings | None = None


def predict_stream(
    predictor: PosePredictor, source: VideoSource, camera: Camera | None, settings: StreamSettings = StreamSettings()
) -> Iterator[dict]:
    """One record per frame of ``source``, in order; ``camera``: the frames' (None: the model's training camera)."""
    network_camera, frame_camera = None, None  # a regression model's poses are drawn with its training camera
    if predictor.takes_camera or camera is not None or predictor.training_camera is not None:
        network_camera, frame_camera = predictor.frame_camera(camera, source.size, source.name)
    box = Box.from_config(predictor.config)
    tracker = None
    if settings.tracking is not None:
        stages = PredictorStages(predictor, network_camera, settings.tracking.min_confidence)
        tracker = Tracker(stages, settings.tracking, box.symmetries)
    overlay = None
    if settings.overlay is not None:
        overlay = VideoWriter(settings.overlay, source.fps or 30.0, source.size)
    with overlay or nullcontext(), _FrameRate(source) as rate:
        for frames, records in _predicted(predictor, source, camera, tracker):
            for frame, record in zip(frames, records, strict=True):
                if overlay is not None:
                    overlay.write(draw_poses(frame.image, record.get("poses", []), frame_camera, box))
                rate.tick()
                yield record
    if tracker is not None:
        logger.info("%d of %d frames searched whole, the rest followed", tracker.searches, source.read)


def _predicted(
    predictor: PosePredictor, source: VideoSource, camera: Camera | None, tracker: Tracker | None
) -> Iterator[tuple[list, list[dict]]]:
    """(frames, their records) in groups: a batch of file frames, or one frame of a device or a tracker."""
    if tracker is not None:
        for frame in source:
            poses = tracker.step(frame.image, frame.timestamp)
            yield [frame], [{"frame": frame.index, "timestamp": frame.timestamp, "poses": poses}]
        return
    batch = 1 if source.live else predictor.batch_size
    pending = []
    for frame in source:
        pending.append(frame)
        if len(pending) == batch:
            yield pending, _records(predictor, pending, camera)
            pending = []
    if pending:
        yield pending, _records(predictor, pending, camera)


def _records(predictor: PosePredictor, frames: list, camera: Camera | None) -> list[dict]:
    """The records of ``frames`` predicted in one batch."""
    (poses,) = predictor.predict_items([frame.image for frame in frames], keep_going=True, camera=camera)
    records = []
    for index, frame in enumerate(frames):
        record = {"frame": frame.index, "timestamp": frame.timestamp}
        error = poses["error"][index]
        records.append({**record, "error": error} if error else {**record, "poses": instance_records(poses, index)})
    return records


def draw_poses(image: np.ndarray, poses: list[dict], camera: np.ndarray | None, box: Box) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) RGB with each pose's box (its track's colour, grey where withheld) and axes
    (x red, y green, z blue, half an edge long) drawn where ``camera`` (4 or 12,; frame pixels) sees them."""
    canvas = np.ascontiguousarray(image).copy()
    if camera is None or not poses:
        return canvas
    for pose, outline in zip(poses, pose_outlines(poses, camera, box), strict=True):
        if outline is None:
            continue
        colour = _colour(pose)
        cv2.polylines(canvas, list(_fixed_point(outline.edges)), False, colour, 2, cv2.LINE_AA, SUBPIXEL_BITS)
        for axis, axis_colour in zip(_fixed_point(outline.axes), AXIS_COLOURS, strict=True):
            cv2.polylines(canvas, [axis], False, axis_colour, 2, cv2.LINE_AA, SUBPIXEL_BITS)
        if "track" in pose:
            corner = tuple(int(v) for v in outline.edges.reshape(-1, 2).min(axis=0) - [0.5, 4.5])
            cv2.putText(canvas, f"#{pose['track']}", corner, cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return canvas


def _fixed_point(pixels: np.ndarray) -> np.ndarray:
    """cubepose's pixels as cv2's fixed-point coordinates (centres on whole numbers, 1/16 px, int32-safe)."""
    bounded = np.clip(pixels - 0.5, -1e5, 1e5)
    return np.round(bounded * (1 << SUBPIXEL_BITS)).astype(np.int32)


def _colour(pose: dict) -> tuple[int, int, int]:
    """A pose's box colour: its track's, grey where the model withheld it, else the first track colour."""
    if pose.get("found") is False:
        return WITHHELD_COLOUR
    return TRACK_COLOURS[pose.get("track", 0) % len(TRACK_COLOURS)]


class _FrameRate:
    """A progress bar over a file's announced frames, or a live stream's frame rate in the log every few seconds."""

    def __init__(self, source: VideoSource) -> None:
        self.source = source
        self.bar = None if source.live else tqdm(total=source.announced, desc=f"predicting {source.name}", unit="frame")
        self.start = self.last = time.monotonic()
        self.count = self.since = 0

    def tick(self) -> None:
        self.count += 1
        self.since += 1
        if self.bar is not None:
            self.bar.update(1)
            return
        now = time.monotonic()
        if now - self.last >= FPS_LOG_SECONDS:
            logger.info(
                "%s: %.1f frames/s (%d frames so far)", self.source.name, self.since / (now - self.last), self.count
            )
            self.last, self.since = now, 0

    def __enter__(self) -> _FrameRate:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        elapsed = time.monotonic() - self.start
        if self.count and elapsed > 0:
            logger.info(
                "%s: %d frames in %.1f s, %.1f frames/s", self.source.name, self.count, elapsed, self.count / elapsed
            )
