"""Video and tracking: generated sequences, videos read frame by frame, an overlay written back, bad videos,
tracks kept through two cubes crossing, and the One-Euro filter."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_fixtures import solved_checkpoint

from conftest import BIN
from cubepose.cli import main
from cubepose.data.formats import read_dataset
from cubepose.geometry.object import Box
from cubepose.geometry.rotations import quaternion_multiply
from cubepose.geometry.symmetries import cube_rotations
from cubepose.inference.predictor import PosePredictor
from cubepose.io.video import VideoSource, VideoWriter
from cubepose.serving.smoothing import PoseSmoother, SmoothingSettings
from cubepose.serving.tracking import Tracker, TrackerSettings

CAMERA = ["--camera", "96", "64", "80", "80", "48", "32"]


def generate_sequence(out: Path, motion: str, count: int, *flags: str) -> Path:
    assert main(["generate", str(out), "--count", str(count), "--format", "solo", "--sequence", motion, *flags]) == 0
    return out


def sequence_labels(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Translations (N, P, 3), quaternions (N, P, 4) and image paths of a generated sequence, in frame order."""
    index = read_dataset(root, max_instances=4)
    order = np.argsort([int(Path(path).parent.name.split(".")[1]) for path in index.image_paths])
    return index.translations[order], index.quaternions[order], [index.image_paths[i] for i in order]


def run_predict(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "cubepose", "predict", *map(str, arguments)], capture_output=True, text=True)


def test_a_sequence_moves_its_objects_smoothly_and_a_static_one_changes_only_its_noise(tmp_path):
    moving = generate_sequence(tmp_path / "moving", "moving", 12, *CAMERA, "--speed", "0.2", "--turn", "45")
    translations, quaternions, paths = sequence_labels(moving)
    steps = np.linalg.norm(np.diff(translations[:, 0], axis=0), axis=-1)
    assert 0 < steps.max() <= 0.2 / 30 + 1e-6  # at most the peak speed over one frame of the 30 fps clock
    turned = 2 * np.degrees(np.arccos(np.clip(np.abs((quaternions[1:, 0] * quaternions[:-1, 0]).sum(-1)), 0, 1)))
    np.testing.assert_allclose(turned, 45 / 30, atol=1e-3)
    with VideoSource.from_file(moving / "sequence.mp4") as video:
        frames = list(video)
    assert len(frames) == 12 and frames[0].image.shape == (64, 96, 3)
    np.testing.assert_allclose([frame.timestamp for frame in frames], np.arange(12) / 30, atol=1e-3)

    still = generate_sequence(tmp_path / "static", "static", 3, *CAMERA)
    translations, _, paths = sequence_labels(still)
    assert np.ptp(translations[:, 0], axis=0).max() == 0
    images = [np.asarray(Image.open(path), np.int16) for path in paths]
    assert 0 < np.abs(images[0] - images[1]).mean() < 10  # the same scene, other sensor noise


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--sequence", "crossing"], "--objects 2 2"),
        (["--sequence", "orbit"], "--sequence must be one of static, moving, crossing"),
        (["--fps", "25"], "give --sequence MOTION too"),
        (["--sequence", "moving", "--fps", "0"], "--fps must be a number from above 0"),
        (["--sequence", "moving", "--fov", "40", "70", "--format", "solo"], "one camera"),
    ],
)
def test_a_sequence_that_cannot_be_filmed_is_refused_before_anything_is_written(tmp_path, caplog, flags, named):
    assert main(["generate", str(tmp_path / "out"), "--count", "4", *flags]) == 2
    assert named in caplog.text and not (tmp_path / "out").exists()


def test_a_video_is_predicted_frame_by_frame_as_its_images_are_and_drawn_back(tmp_path):
    """A lossless video of a generated sequence gives, frame by frame, the poses ``cubepose predict`` gives its
    PNG files; the overlay has every frame, at the video's size, with the boxes drawn."""
    root = generate_sequence(tmp_path / "seq", "moving", 6, *CAMERA)
    _, _, paths = sequence_labels(root)
    lossless = tmp_path / "sequence.mkv"
    with VideoWriter(lossless, 30, (96, 64)) as video:
        for path in paths:
            video.write(np.asarray(Image.open(path).convert("RGB")))
    checkpoint = solved_checkpoint(tmp_path, "zoom")
    camera = root / "camera_info.yaml"
    overlay = tmp_path / "overlay.mp4"
    streamed = run_predict("--checkpoint", checkpoint, "--camera", camera, "--video", lossless, "--overlay", overlay)
    assert streamed.returncode == 0, streamed.stderr
    per_image = run_predict("--checkpoint", checkpoint, "--camera", camera, *paths)
    frames = [json.loads(line) for line in streamed.stdout.splitlines()]
    images = [json.loads(line) for line in per_image.stdout.splitlines()]
    assert [frame["frame"] for frame in frames] == list(range(6))
    for frame, image in zip(frames, images, strict=True):
        np.testing.assert_allclose(frame["poses"][0]["translation"], image["poses"][0]["translation"], rtol=1e-5)
    with VideoSource.from_file(overlay) as drawn:
        drawn_frames = list(drawn)
    assert len(drawn_frames) == 6 and drawn_frames[0].image.shape == (64, 96, 3)
    assert not list(tmp_path.glob(".overlay.mp4*"))  # written beside, moved onto its name
    tracked = run_predict("--checkpoint", checkpoint, "--camera", camera, "--video", lossless, "--track", "--smooth")
    assert tracked.returncode == 0, tracked.stderr
    records = [json.loads(line) for line in tracked.stdout.splitlines()]
    assert [record["frame"] for record in records] == list(range(6)) and all("poses" in r for r in records)


def test_a_truncated_video_gives_the_frames_it_holds_and_one_message(tmp_path):
    video_path = tmp_path / "cut.avi"
    with VideoWriter(video_path, 10, (64, 48)) as video:
        for seed in range(10):
            video.write(np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    size = video_path.stat().st_size
    with open(video_path, "r+b") as handle:
        handle.truncate(int(size * 0.6))
    checkpoint = solved_checkpoint(tmp_path, "keypoints")
    result = run_predict("--checkpoint", checkpoint, "--intrinsics", "60", "60", "32", "24", "--video", video_path)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 2 and 0 < len(lines) < 10
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == [
        f"ERROR cubepose: {video_path} ended after {len(lines)} of 10 frames (truncated or damaged); "
        "the lines printed are valid"
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--video", "{tmp}/absent.mp4"], "no video file at"),
        (["--video", "{tmp}/noise.mp4"], "cannot read {tmp}/noise.mp4 as a video"),
        (["--camera-device", "97"], "cannot open camera device 97"),
        (["--video", "{tmp}/frame.png", "{tmp}/frame.png"], "not both"),
        (["{tmp}/frame.png", "--track"], "give --video FILE or --camera-device N"),
        (["--video", "{tmp}/clip.avi", "--track"], "this checkpoint holds a keypoint network"),
        (["--video", "{tmp}/clip.avi", "--overlay", "{tmp}/out.gif"], "give a file ending in .mp4, .avi, .mkv"),
    ],
)
def test_a_video_or_device_that_cannot_be_read_gets_one_message(tmp_path, arguments, named):
    Image.new("RGB", (64, 48)).save(tmp_path / "frame.png")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with VideoWriter(tmp_path / "clip.avi", 10, (64, 48)) as video:
        video.write(np.zeros((48, 64, 3), np.uint8))
    checkpoint = solved_checkpoint(tmp_path, "keypoints")
    given = [argument.format(tmp=tmp_path) for argument in arguments]
    result = run_predict("--checkpoint", checkpoint, "--intrinsics", "60", "60", "32", "24", *given)
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert result.returncode == 2 and len(errors) == 1 and named.format(tmp=tmp_path) in errors[0], result.stderr
    assert "Traceback" not in result.stderr


class Oracle:
    """A tracker's stages answered from a sequence's labels, as a well-trained model would: ``search`` gives every
    visible object, ``follow`` the object whose image position is nearest each crop's centre (what a crop there
    shows), each with ``noise`` metres of error; an object hidden behind another is not found."""

    def __init__(self, translations: np.ndarray, quaternions: np.ndarray, camera: np.ndarray, noise: float) -> None:
        self.translations, self.quaternions, self.camera, self.noise = translations, quaternions, camera, noise
        self.frame = 0
        self.rng = np.random.default_rng(0)

    def _pixels(self, points: np.ndarray) -> np.ndarray:
        fx, fy, cx, cy = self.camera
        return np.stack([cx + fx * points[:, 0] / points[:, 2], cy - fy * points[:, 1] / points[:, 2]], -1)

    def _visible(self) -> np.ndarray:
        """Objects not hidden: no nearer one's silhouette (its bounding circle) covers its centre in the image."""
        pixels, depth = self._pixels(self.translations[self.frame]), self.translations[self.frame, :, 2]
        gaps = np.linalg.norm(pixels[:, None] - pixels[None], axis=-1)  # [hidden?, by]
        radius = self.camera[0] * Box().radius / depth
        hidden = ((gaps < radius[None, :]) & (depth[None, :] < depth[:, None])).any(axis=1)
        return ~hidden

    def _poses(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        noisy = self.translations[self.frame, rows] + self.rng.normal(0, self.noise, (len(rows), 3))
        return {
            "translation": noisy,
            "quaternion": self.quaternions[self.frame, rows],
            "confidence": np.ones(len(rows)),
        }

    def search(self, image: np.ndarray) -> dict[str, np.ndarray]:
        return self._poses(np.flatnonzero(self._visible()))

    def follow(self, image: np.ndarray, expected: np.ndarray, framing: np.ndarray) -> dict[str, np.ndarray]:
        seen = self._pixels(self.translations[self.frame])
        nearest = np.linalg.norm(self._pixels(expected)[:, None] - seen[None], axis=-1).argmin(axis=1)
        return {**self._poses(nearest), "found": self._visible()[nearest]}


def test_tracks_keep_their_ids_through_two_cubes_crossing(tmp_path):
    """On a generated crossing, where the far cube passes behind the near one and is hidden for some frames,
    each track id stays on its own cube from the first frame to the last."""
    far = ["--preset", "ur3-free", "--camera", "96", "64", "160", "160", "48", "32", "--seed", "4"]  # the UR3 table
    root = generate_sequence(tmp_path / "cross", "crossing", 60, "--objects", "2", "2", *far)
    translations, quaternions, _ = sequence_labels(root)
    oracle = Oracle(translations[:, :2], quaternions[:, :2], np.array([160.0, 160.0, 48.0, 32.0]), noise=0.005)
    tracker = Tracker(oracle, TrackerSettings(search_every=10))
    hidden_frames = 0
    owners: dict[int, set[int]] = {}
    for frame in range(60):
        oracle.frame = frame
        hidden_frames += not oracle._visible().all()
        for record in tracker.step(np.zeros((64, 96, 3), np.uint8), frame / 30):
            truth = np.linalg.norm(translations[frame, :2] - record["translation"], axis=-1)
            assert truth.min() < 0.03  # the pose is one cube's, not between the two (0.17 m apart at least)
            owners.setdefault(record["track"], set()).add(int(truth.argmin()))
    assert hidden_frames > 0  # the crossing did hide one cube
    assert sorted(owners) == [0, 1] and sorted(owners[0] | owners[1]) == [0, 1]  # two tracks, one cube each
    assert all(len(cubes) == 1 for cubes in owners.values())
    assert tracker.searches < 60  # most frames were followed


def test_tracking_needs_a_zoom_in_model_and_follows_with_its_second_stage(tmp_path):
    """``PosePredictor.follow`` crops each object where it is expected and solves it alone: one row per track."""
    predictor = PosePredictor.load(solved_checkpoint(tmp_path, "zoom"))
    frame = np.random.default_rng(1).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    followed = predictor.follow(frame, np.array([[0.0, 0.0, 0.5], [0.05, 0.02, 0.6]]), np.array([70, 70, 32, 32.0]))
    assert followed["translation"].shape == (2, 3) and followed["valid"].all()
    assert set(followed) >= {"quaternion", "confidence", "reprojection_error", "found"}


def test_the_one_euro_filter_stills_a_still_object_and_follows_a_moving_one():
    rng = np.random.default_rng(0)
    smoother = PoseSmoother(SmoothingSettings(min_cutoff=0.5, beta_translation=5.0, beta_rotation=1.0))
    truth = np.array([[0.1, -0.05, 1.0]])
    still = truth + rng.normal(0, 0.005, (300, 1, 3))
    state = smoother.start(still[0], np.array([[0.0, 0.0, 0.0, 1.0]]))
    smoothed = []
    for sample in still[1:]:
        state = smoother.update(state, sample, np.array([[0.0, 0.0, 0.0, 1.0]]), np.array([1 / 30]))
        smoothed.append(state[0, :3])
    assert np.std(smoothed[30:], axis=0).max() < 0.4 * 0.005  # a first-order low-pass at 0.5 Hz of 30 Hz samples
    moving = truth + np.arange(60)[:, None, None] * np.array([0.01, 0.0, 0.0])  # 0.3 m/s
    state = smoother.start(moving[0], np.array([[0.0, 0.0, 0.0, 1.0]]))
    for sample in moving[1:]:
        state = smoother.update(state, sample, np.array([[0.0, 0.0, 0.0, 1.0]]), np.array([1 / 30]))
    assert abs(state[0, 0] - moving[-1, 0, 0]) < 0.02  # the speed opens the filter: little lag


def test_a_symmetric_objects_equivalent_orientations_are_not_blended():
    """A cube's pose reported as another of its 24 equivalent orientations does not turn the smoothed one."""
    group = cube_rotations()
    smoother = PoseSmoother(SmoothingSettings(), group)
    start = np.array([[0.0, 0.0, 0.0, 1.0]])
    state = smoother.start(np.zeros((1, 3)), start)
    for turn in group[1:6]:
        state = smoother.update(state, np.zeros((1, 3)), quaternion_multiply(start, turn), np.array([1 / 30]))
    assert 2 * math.degrees(math.acos(min(1.0, abs(state[0, 6])))) < 1e-6 and state[0, 6] >= 0
