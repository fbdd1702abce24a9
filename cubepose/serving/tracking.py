"""Following objects from frame to frame: crop where each one was, search the whole image only when needed.

Each track holds the last pose the model gave for one instance and its velocity (per frame, in the camera frame,
averaged). On a new frame every track is followed by the zoom-in model's second stage alone, on a crop around
where the track is expected (``PosePredictor.follow``), cut from the frame as taken: one small crop per track
instead of both stages on the whole resized image. The whole image is searched instead (both stages, every
instance the model finds) when there is no track, when a track is not found again (the model withholds its pose,
or its confidence falls below ``min_confidence``), when two tracks land on one object, and every
``search_every`` frames to find new instances. A search's poses continue the tracks they are nearest to (within
``gate`` metres of where a track is expected, nearest pairs first) and start new tracks with new ids; a track
unseen for more than ``max_misses`` frames ends. Poses given out may be smoothed (cubepose.serving.smoothing).

Stage 2's depth leans towards the scale of its crop, so a crop sized by the track's last depth would let the
depth wander: crops are sized by an average over searches of stage 1's apparent size, and a search's poses are
solved again as the followed ones are, so the depth does not jump at each search.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from cubepose.evaluation.metrics import CONFIDENCE_KEYS
from cubepose.inference.predictor import PosePredictor
from cubepose.serving.smoothing import STATE, PoseSmoother, SmoothingSettings

logger = logging.getLogger(__name__)

FIELDS = ("ids", "translations", "quaternions", "velocities", "framing", "misses", "seen_at", "scores", "smoothed")
POSE_KEYS = ("translation", "quaternion", *CONFIDENCE_KEYS)  # what a record of a track carries
FRAMING = "depth_from_size"  # a search's depth of the object by its apparent size: a new track's crop scale
FRAMING_WEIGHT = 0.5  # of a search's depth by apparent size in the depth a track's crops are sized for
VELOCITY_WEIGHT = 0.2  # of a new velocity against the track's: two noisy poses' difference is twice as noisy


@dataclass(frozen=True)
class TrackerSettings:
    """How tracks are followed, searched for and ended (``cubepose predict --track``)."""

    search_every: int = 30  # frames: a whole-image search this often while every track is followed (new objects)
    min_confidence: float = 0.5  # a followed pose scored lower counts as lost, and the image is searched
    gate: float = 0.1  # metres: the farthest a searched pose may be from where a track is expected to continue it
    max_misses: int = 10  # frames a track survives unseen (occluded, out of view) before it ends
    smoothing: SmoothingSettings | None = None  # None: poses as the model gives them

    def __post_init__(self) -> None:
        if self.search_every < 1 or self.max_misses < 0:
            raise ValueError(f"search_every must be at least 1 and max_misses at least 0, got {self}")
        if not (0 <= self.min_confidence <= 1) or not self.gate > 0:
            raise ValueError(f"min_confidence must be 0-1 and gate above 0 metres, got {self}")


@dataclass
class _Tracks:
    """The live tracks, one row each: ids, raw poses, velocities (m per frame), frames since seen, filter state."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    translations: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    quaternions: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    velocities: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    framing: np.ndarray = field(default_factory=lambda: np.zeros(0))  # metres: the depth its crops are sized for
    misses: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    seen_at: np.ndarray = field(default_factory=lambda: np.zeros(0))  # timestamp of the last pose
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0, len(CONFIDENCE_KEYS))))  # NaN: none given
    smoothed: np.ndarray = field(default_factory=lambda: np.zeros((0, STATE)))

    def keep(self, rows: np.ndarray) -> None:
        """Keep only ``rows`` (bool or indices), in that order."""
        for name in FIELDS:
            setattr(self, name, getattr(self, name)[rows])

    def add(self, count: int, first_id: int) -> np.ndarray:
        """``count`` new rows with the next ids, unseen so far; returns their row indices."""
        rows = np.arange(len(self.ids), len(self.ids) + count)
        for name in FIELDS:
            value = getattr(self, name)
            setattr(self, name, np.concatenate([value, np.zeros((count, *value.shape[1:]), value.dtype)]))
        self.ids[rows] = np.arange(first_id, first_id + count)
        return rows

    def expected(self) -> np.ndarray:
        """(T, 3) where each track should be now: its last pose moved on by its velocity for the frames missed."""
        return self.translations + self.velocities * (self.misses + 1)[:, None]


class Stages(Protocol):
    """What a tracker runs on a frame (uint8 RGB, as taken): ``search`` the whole image for every instance (rows of
    POSE_KEYS, and of FRAMING when the model gives it), or ``follow`` objects from where they are expected (T, 3)
    with crops sized for ``framing`` (T,) metres, one row each of POSE_KEYS plus ``found`` (bool)."""

    def search(self, image: np.ndarray) -> dict[str, np.ndarray]: ...

    def follow(self, image: np.ndarray, expected: np.ndarray, framing: np.ndarray) -> dict[str, np.ndarray]: ...


class PredictorStages:
    """A zoom-in model's two stages as a tracker runs them: both on the whole image, or stage 2 alone per track."""

    def __init__(self, predictor: PosePredictor, camera: np.ndarray, min_confidence: float) -> None:
        """``camera`` (4 or 12,): the frames' camera in network-input pixels; a followed pose scored below
        ``min_confidence`` counts as not found."""
        predictor.check_follows()
        self.predictor, self.camera, self.min_confidence = predictor, np.asarray(camera), min_confidence

    def search(self, image: np.ndarray) -> dict[str, np.ndarray]:
        prepared = np.array(self.predictor.prepare_item(image))[None]
        return _found_instances(self.predictor.predict_batch(prepared, self.camera[None]))

    def follow(self, image: np.ndarray, expected: np.ndarray, framing: np.ndarray) -> dict[str, np.ndarray]:
        poses = self.predictor.follow(image, expected, self.camera, framing)
        confidence = poses.get("confidence", np.ones(len(expected)))
        found = poses["valid"] & (poses["found"] > 0.5) & (confidence >= self.min_confidence)
        return {**{key: np.asarray(poses[key], np.float64) for key in POSE_KEYS if key in poses}, "found": found}


class Tracker:
    """Tracks of the objects found in consecutive frames of one camera."""

    def __init__(
        self, stages: Stages, settings: TrackerSettings = TrackerSettings(), symmetries: np.ndarray | None = None
    ) -> None:
        """``symmetries``: the object's, for smoothing its orientation."""
        self.stages, self.settings = stages, settings
        self.smoother = None if settings.smoothing is None else PoseSmoother(settings.smoothing, symmetries)
        self.tracks = _Tracks()
        self.next_id = 0
        self.since_search = 0
        self.searches = 0  # frames on which the whole image was searched

    def step(self, image: np.ndarray, timestamp: float) -> list[dict]:
        """The poses in one frame (H, W, 3) uint8 RGB taken at ``timestamp`` seconds: one record per track
        seen in it, ``{"track", "translation", "quaternion", "confidence", "reprojection_error", "followed"}``,
        by track id."""
        followed = self._followed(image)
        if followed is None:
            self._search(image, timestamp)
        else:
            self._update(np.arange(len(self.tracks.ids)), followed, timestamp)
        self.since_search = 0 if followed is None else self.since_search + 1
        seen = np.flatnonzero(self.tracks.misses == 0)
        return [self._record(row, followed is not None) for row in seen[np.argsort(self.tracks.ids[seen])]]

    def _followed(self, image: np.ndarray) -> dict[str, np.ndarray] | None:
        """Every track's pose from a crop where it is expected, or None when the image must be searched."""
        tracks = self.tracks
        if not len(tracks.ids) or (tracks.misses > 0).any() or self.since_search + 1 >= self.settings.search_every:
            return None
        poses = self.stages.follow(image, tracks.expected(), tracks.framing)
        if not poses["found"].all() or _collide(poses["translation"], self.settings.gate / 2):
            return None
        return {key: value for key, value in poses.items() if key in POSE_KEYS}

    def _search(self, image: np.ndarray, timestamp: float) -> None:
        """Both stages on the whole image; its poses continue the nearest tracks or start new ones."""
        self.searches += 1
        found = self.stages.search(image)
        tracks = self.tracks
        pairs = _nearest_pairs(tracks.expected(), found["translation"], self.settings.gate)
        continued, matched = pairs[:, 0], pairs[:, 1]
        found = self._followed_again(image, found, continued, matched)
        tracks.misses[np.setdiff1d(np.arange(len(tracks.ids)), continued)] += 1
        self._update(continued, {key: value[matched] for key, value in found.items()}, timestamp)
        new = np.setdiff1d(np.arange(len(found["translation"])), matched)
        if len(new):
            rows = tracks.add(len(new), self.next_id)
            self.next_id += len(new)
            self._update(rows, {key: value[new] for key, value in found.items()}, timestamp, started=True)
            logger.info("track(s) %s started", tracks.ids[rows].tolist())
        alive = tracks.misses <= self.settings.max_misses
        if not alive.all():
            ended = tracks.ids[~alive].tolist()
            logger.info("track(s) %s ended: unseen for %d frames", ended, self.settings.max_misses + 1)
        tracks.keep(alive)

    def _followed_again(
        self, image: np.ndarray, found: dict[str, np.ndarray], continued: np.ndarray, matched: np.ndarray
    ) -> dict[str, np.ndarray]:
        """``found``, each pose solved again the way the frames between searches are (``follow`` at the searched
        place, the crop sized as its track's next ones): a search's crop is framed otherwise, and its depth would
        jump from the followed ones' by the difference."""
        if not len(found["translation"]):
            return found
        framing = found.get(FRAMING, found["translation"][:, 2]).copy()
        if FRAMING in found:  # a continued track's crops are sized by its average, with this search's weighed in
            previous = self.tracks.framing[continued]
            framing[matched] = previous + FRAMING_WEIGHT * (found[FRAMING][matched] - previous)
        again = self.stages.follow(image, found["translation"], framing)
        kept = again["found"]
        return {
            key: np.where(kept.reshape(-1, *[1] * (value.ndim - 1)), again[key], value) if key in again else value
            for key, value in found.items()
        }

    def _update(self, rows: np.ndarray, poses: dict[str, np.ndarray], timestamp: float, started: bool = False) -> None:
        """Tracks ``rows`` seen now at ``poses`` (rows of POSE_KEYS); ``started``: tracks begun at these poses."""
        tracks = self.tracks
        translations, quaternions = poses["translation"], poses["quaternion"]
        if not len(rows):
            return
        if not started:
            moved = (translations - tracks.translations[rows]) / (tracks.misses[rows] + 1)[:, None]
            tracks.velocities[rows] += VELOCITY_WEIGHT * (moved - tracks.velocities[rows])
        apparent = poses.get(FRAMING)  # a search's: stage 1's, independent of the track
        if started:
            tracks.framing[rows] = translations[:, 2] if apparent is None else apparent
        elif apparent is not None:  # averaged over searches: never from stage 2's depth, which follows the crop
            tracks.framing[rows] += FRAMING_WEIGHT * (apparent - tracks.framing[rows])
        if self.smoother is not None:
            tracks.smoothed[rows] = (
                self.smoother.start(translations, quaternions)
                if started
                else self.smoother.update(
                    tracks.smoothed[rows], translations, quaternions, timestamp - tracks.seen_at[rows]
                )
            )
        tracks.translations[rows], tracks.quaternions[rows] = translations, quaternions
        tracks.scores[rows] = np.stack(
            [poses.get(key, np.full(len(rows), np.nan)) for key in CONFIDENCE_KEYS], axis=-1
        ).reshape(len(rows), -1)
        tracks.misses[rows], tracks.seen_at[rows] = 0, timestamp

    def _record(self, row: int, followed: bool) -> dict:
        """Track ``row``'s pose as a JSON record (smoothed when smoothing)."""
        tracks = self.tracks
        translation, quaternion = tracks.translations[row], tracks.quaternions[row]
        if self.smoother is not None:
            translation, quaternion = tracks.smoothed[row, :3], tracks.smoothed[row, 3:7]
        scores = {key: float(v) for key, v in zip(CONFIDENCE_KEYS, tracks.scores[row], strict=True) if np.isfinite(v)}
        return {
            "track": int(tracks.ids[row]),
            "translation": [float(v) for v in translation],
            "quaternion": [float(v) for v in quaternion],
            **scores,
            "followed": followed,
        }


def _found_instances(poses: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The instances a search found in its one image, as rows (D, ...) of POSE_KEYS (a one-instance model's
    pose is one row, kept where ``found``)."""
    instances = {key: np.asarray(poses[key][0], np.float64) for key in (*POSE_KEYS, FRAMING) if key in poses}
    if instances["translation"].ndim == 1:  # one instance per image: a slot axis of one
        instances = {key: value[None] for key, value in instances.items()}
    count = len(instances["translation"])
    found = np.asarray(poses["found"][0]).reshape(count) > 0.5 if "found" in poses else np.ones(count, bool)
    return {key: value[found & bool(poses["valid"][0])] for key, value in instances.items()}


def _nearest_pairs(expected: np.ndarray, found: np.ndarray, gate: float) -> np.ndarray:
    """(M, 2) pairs (track row, pose row), nearest first, each row used once, none farther apart than ``gate``."""
    distance = np.linalg.norm(expected[:, None] - found[None], axis=-1)  # (T, D)
    pairs = []
    for flat in np.argsort(distance, axis=None):  # T x D: a few instances
        track, pose = np.unravel_index(flat, distance.shape)
        if distance[track, pose] > gate:
            break
        if all(track != t and pose != p for t, p in pairs):
            pairs.append((track, pose))
    return np.array(pairs, int).reshape(-1, 2)


def _collide(translations: np.ndarray, distance: float) -> bool:
    """Whether two of the poses (T, 3) lie closer than ``distance``: two tracks followed onto one object."""
    if len(translations) < 2:
        return False
    gaps = np.linalg.norm(translations[:, None] - translations[None], axis=-1)
    return bool((gaps[np.triu_indices(len(translations), 1)] < distance).any())
