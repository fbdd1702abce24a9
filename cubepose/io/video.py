"""Frames from a video file or a camera device, and frames written to a video file, through OpenCV.

OpenCV's wheel carries FFmpeg (files, most codecs, network streams) and V4L2 (devices), so one dependency reads
both (docs/installation.md says why not PyAV). ``VideoSource`` yields ``Frame``s (index, timestamp, RGB image);
a file whose header announces more frames than it holds (truncated, damaged) ends early and says so through
``missing``, with every frame that could be read delivered first. ``VideoWriter`` picks a codec every player
opens from the file's extension.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cubepose.errors import CubeposeError
from cubepose.io.temporary import remove_orphans, temporary_beside

logger = logging.getLogger(__name__)

MAX_FRAME_PIXELS = 4096 * 4096  # as the service's image limit: larger frames are refused, not decoded
CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "FFV1"}  # codecs OpenCV's FFmpeg encodes (FFV1: lossless)
DEVICE_BUFFER = 1  # frames a device may queue: a slow consumer gets the newest frame, not a backlog

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own complaints too (read at the first capture)
cv2.setLogLevel(0)  # silent: OpenCV's errors become cubepose's messages


@dataclass(frozen=True)
class Frame:
    """One frame: its ``index`` from 0, its ``timestamp`` in seconds (the file's presentation time, or since a
    device opened) and the ``image`` as uint8 RGB (H, W, 3)."""

    index: int
    timestamp: float
    image: np.ndarray


class VideoSource:
    """The frames of a video file (``from_file``) or a camera device (``from_device``), read in order."""

    def __init__(self, capture: cv2.VideoCapture, name: str, live: bool) -> None:
        self.capture, self.name, self.live = capture, name, live
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(capture.get(cv2.CAP_PROP_FPS)) or None
        announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.announced = announced if announced > 0 and not live else None  # frames the file's header promises
        self.read = 0
        if self.width * self.height > MAX_FRAME_PIXELS:
            self.close()
            raise CubeposeError(
                f"{name} has {self.width}x{self.height} frames, more than {MAX_FRAME_PIXELS:,} pixels; "
                "scale the video down first"
            )

    @classmethod
    def from_file(cls, path: str | Path) -> VideoSource:
        """A video file OpenCV's FFmpeg reads (MP4, AVI, MKV, ...); a missing or unreadable one is a CubeposeError."""
        if not Path(path).is_file():
            raise CubeposeError(f"no video file at {path}; give the path of an MP4, AVI or MKV file")
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise CubeposeError(
                f"cannot read {path} as a video (not a video, an unsupported codec, or damaged before its first "
                "frame); give an MP4, AVI or MKV file, or re-encode it with ffmpeg -i IN -c:v libx264 OUT.mp4"
            )
        return cls(capture, str(path), live=False)

    @classmethod
    def from_device(cls, index: int) -> VideoSource:
        """Camera ``index`` (``/dev/video<index>`` on Linux), keeping at most ``DEVICE_BUFFER`` frames queued."""
        capture = cv2.VideoCapture(index)
        if not capture.isOpened():
            raise CubeposeError(
                f"cannot open camera device {index} (no /dev/video{index}, or it is busy); list the cameras with "
                "v4l2-ctl --list-devices and give one of their numbers"
            )
        capture.set(cv2.CAP_PROP_BUFFERSIZE, DEVICE_BUFFER)
        return cls(capture, f"camera device {index}", live=True)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames in pixels."""
        return self.width, self.height

    @property
    def missing(self) -> int:
        """Frames the file's header announced that could not be read (0 for a whole file or a device)."""
        return 0 if self.announced is None else max(0, self.announced - self.read)

    def __iter__(self) -> Iterator[Frame]:
        started = time.monotonic()
        while True:
            ok, bgr = self.capture.read()
            if not ok or bgr is None:
                break
            stamp = time.monotonic() - started if self.live else self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
            yield Frame(self.read, stamp, np.ascontiguousarray(bgr[..., ::-1]))
            self.read += 1
        if self.missing:
            logger.warning(
                "%s ended after %d of the %d frames its header announces (truncated or damaged): the frames read "
                "were predicted",
                self.name,
                self.read,
                self.announced,
            )

    def close(self) -> None:
        """Release the file or device."""
        self.capture.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """Frames (uint8 RGB, all of one size) written to a video file, its codec chosen by the extension.

    Written inside a temporary folder beside the file (FFmpeg picks the container by the name's extension, so the
    file keeps its name there) and moved onto it by ``close``; an interrupted run leaves no half file, only a
    temporary that the next run removes."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        path = Path(path)
        codec = CODECS.get(path.suffix.lower())
        if codec is None:
            raise CubeposeError(f"cannot write video {path}: give a file ending in {', '.join(CODECS)}")
        if not path.parent.is_dir():
            raise CubeposeError(f"cannot write video {path}: no folder {path.parent}; create it first")
        remove_orphans(path.parent, path.name)
        self.path, self.size = path, size
        self._folder = ExitStack()
        self._partial = self._folder.enter_context(temporary_beside(path, folder=True)) / path.name
        self.writer = cv2.VideoWriter(str(self._partial), cv2.VideoWriter_fourcc(*codec), fps, size)
        if not self.writer.isOpened():
            self._folder.close()
            raise CubeposeError(f"cannot write video {path}: OpenCV cannot write {codec} video there")

    def write(self, image: np.ndarray) -> None:
        """Append one uint8 RGB frame (H, W, 3) of the writer's size."""
        self.writer.write(np.ascontiguousarray(image[..., ::-1]))

    def close(self, keep: bool = True) -> None:
        """Finish the file (its index and header) and move it onto its name; ``keep`` False discards it."""
        self.writer.release()
        if keep:
            os.replace(self._partial, self.path)
        self._folder.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind, *exc) -> None:
        self.close(keep=kind is None or issubclass(kind, (CubeposeError, KeyboardInterrupt)))  # Ctrl-C ends a stream
