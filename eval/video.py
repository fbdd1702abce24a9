"""Streams, tracking, smoothing and lens distortion, measured on generated sequences with the code users run.

    .venv/bin/python eval/video.py --checkpoint /tmp/ur3_640/row-0.ckpt --preset ur3-free \
        --camera 640 480 415.692 415.692 320 240 --data-dir data/video

Renders with ``cubepose generate`` (kept in --data-dir and reused): ``--sequences`` static and moving
``--sequence`` clips of ``--frames`` frames, and ``--distortion-images`` independent images through a lens
(``--lens K1 K2 P1 P2``, a webcam-like -0.3 0.1 0 0) next to the same images through a pinhole. Then,
with one ``PosePredictor`` and ``cubepose.serving.video.predict_stream`` (what ``cubepose predict --video``
runs):

- frames per second over the MPEG-4 videos, without and with ``--track``, A/B alternating per clip, the clip
  read as a file (frames batched) and as a live stream (one frame at a time, as a camera delivers them);
  jitter and errors come from lossless videos of the same frames (a camera driver's raw frames: the MPEG-4
  file's compression noise repeats with its 12-frame groups and would pass for jitter);
- jitter on the static clips: the standard deviation over each clip of the translation (mm, all axes) and the
  RMS angle to the clip's mean orientation (deg), per-frame search against tracking, raw and smoothed;
- error on the moving clips against the labels: per-frame search, tracking, tracking smoothed;
- the lens: errors on the distorted images with the lens ignored (pinhole camera) and applied (camera_info.yaml),
  beside the pinhole images' own.

Errors are over the poses given out (a withheld pose is counted apart, as a share of frames given a pose).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cubepose.data.calibration import read_calibration
from cubepose.data.formats import read_dataset
from cubepose.inference.predictor import PosePredictor
from cubepose.io.video import VideoSource, VideoWriter
from cubepose.serving.smoothing import SmoothingSettings
from cubepose.serving.tracking import TrackerSettings
from cubepose.serving.video import StreamSettings, predict_stream
from cubepose.synth.generate import CAMERA_INFO

REPO = Path(__file__).resolve().parents[1]
CUBEPOSE = REPO / ".venv" / "bin" / "cubepose"
logger = logging.getLogger("video")


def generate(out: Path, *flags: str) -> Path:
    """``cubepose generate out flags`` unless ``out`` already holds its camera_info.yaml (a finished run)."""
    if not (out / CAMERA_INFO).exists():
        subprocess.run([str(CUBEPOSE), "generate", str(out), "--format", "solo", *flags], check=True)
    return out


def lossless(clip: Path) -> Path:
    """The clip's frames as an FFV1 video (written once from its PNGs): what a camera driver hands over, without
    the MPEG-4 file's compression noise, which repeats with its 12-frame groups and would pass for jitter."""
    video = clip / "lossless.mkv"
    if not video.exists():
        _, _, paths = labels(clip)
        with VideoWriter(video, 30, Image.open(paths[0]).size) as writer:
            for path in paths:
                writer.write(np.asarray(Image.open(path).convert("RGB")))
    return video


def labels(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The first cube's translations (N, 3), quaternions (N, 4) and image paths, in frame order."""
    index = read_dataset(root)
    order = np.argsort([int(Path(path).parent.name.split(".")[1]) for path in index.image_paths])
    return index.translations[order, 0], index.quaternions[order, 0], [index.image_paths[i] for i in order]


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Geodesic angles (deg) between unit quaternions (..., 4)."""
    return np.degrees(2 * np.arccos(np.clip(np.abs((a * b).sum(-1)), 0, 1)))


def first_poses(records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Per record, the first pose given out (N, 3), (N, 4); NaN rows where none was (withheld or not found)."""
    translations, quaternions = np.full((len(records), 3), np.nan), np.full((len(records), 4), np.nan)
    for row, record in enumerate(records):
        given = [pose for pose in record.get("poses", []) if pose.get("found") is not False]
        if given:
            translations[row], quaternions[row] = given[0]["translation"], given[0]["quaternion"]
    return translations, quaternions


def stream(predictor: PosePredictor, video: Path, camera, tracking: TrackerSettings | None, live: bool) -> tuple:
    """(records, seconds) of ``predict_stream`` over ``video``, read as a file or as a live stream."""
    source = VideoSource.from_file(video)
    if live:
        source.live = True  # one frame at a time, as a camera delivers them
    start = time.perf_counter()
    with source:
        records = list(predict_stream(predictor, source, camera, StreamSettings(tracking=tracking)))
    return records, time.perf_counter() - start


def speed_table(predictor, clips: list[Path], camera, repeats: int) -> list[str]:
    """Frames per second, per-frame search against tracking, A/B alternating per clip and repeat."""
    modes = {
        "per-frame search, file (batched)": (None, False),
        "per-frame search, live (one by one)": (None, True),
        "--track, live (one by one)": (TrackerSettings(), True),
    }
    rates: dict[str, list[float]] = {name: [] for name in modes}
    followed: list[float] = []
    for _ in range(repeats):
        for clip in clips:
            for name, (tracking, live) in modes.items():
                records, seconds = stream(predictor, clip / "sequence.mp4", camera, tracking, live)
                rates[name].append(len(records) / seconds)
                if tracking is not None:
                    followed.append(np.mean([p.get("followed", False) for r in records for p in r["poses"][:1]]))
    base = statistics.median(rates["per-frame search, live (one by one)"])
    rows = ["| mode | frames/s (median) | ratio to per-frame search, live |", "|---|---|---|"]
    rows += [
        f"| {name} | {statistics.median(r):.1f} | {statistics.median(r) / base:.2f} |" for name, r in rates.items()
    ]
    rows.append(f"\nposes followed (not searched) with --track: {np.mean(followed):.0%} of those given")
    return rows


def poses_by_mode(predictor, clips: list[Path], camera, smoothing: SmoothingSettings) -> dict[str, list[tuple]]:
    """Per mode (per-frame search, tracking, tracking smoothed), per clip: (clip, first poses (N, 3), (N, 4)) read
    live from the clip's lossless copy."""
    modes = {
        "per-frame search": None,
        "--track": TrackerSettings(),
        "--track --smooth": TrackerSettings(smoothing=smoothing),
    }
    return {
        name: [
            (clip, *first_poses(stream(predictor, lossless(clip), camera, tracking, live=True)[0])) for clip in clips
        ]
        for name, tracking in modes.items()
    }


def jitter_table(by_mode: dict[str, list[tuple]]) -> list[str]:
    """Standard deviation of the pose over each static clip, per mode."""
    rows = [
        "| mode | translation std mm (median of clips) | rotation std deg | frames given a pose |",
        "|---|---|---|---|",
    ]
    for name, clips in by_mode.items():
        spreads, turns, given = [], [], []
        for _, translations, quaternions in clips:
            kept = ~np.isnan(translations[:, 0])
            given.append(kept.mean())
            if kept.sum() < 2:
                continue
            spreads.append(1000 * np.sqrt(translations[kept].var(axis=0).sum()))
            mean = quaternions[kept] * np.sign((quaternions[kept] * quaternions[kept][:1]).sum(-1, keepdims=True))
            mean = mean.mean(axis=0) / np.linalg.norm(mean.mean(axis=0))
            turns.append(float(np.sqrt((angle_deg(quaternions[kept], mean) ** 2).mean())))
        rows.append(f"| {name} | {np.median(spreads):.2f} | {np.median(turns):.3f} | {np.mean(given):.0%} |")
    return rows


def error_table(by_mode: dict[str, list[tuple]]) -> list[str]:
    """Errors against the labels on the moving clips, per mode."""
    rows = [
        "| mode | translation cm mean (median) | rotation deg mean (median) | frames given a pose |",
        "|---|---|---|---|",
    ]
    for name, clips in by_mode.items():
        cm, deg, given = [], [], []
        for clip, translations, quaternions in clips:
            truth_t, truth_q, _ = labels(clip)
            kept = ~np.isnan(translations[:, 0])
            given.append(kept.mean())
            cm += list(100 * np.linalg.norm(translations[kept] - truth_t[kept], axis=-1))
            deg += list(angle_deg(quaternions[kept], truth_q[kept]))
        rows.append(
            f"| {name} | {np.mean(cm):.2f} ({np.median(cm):.2f}) | {np.mean(deg):.2f} ({np.median(deg):.2f}) "
            f"| {np.mean(given):.0%} |"
        )
    return rows


def lens_table(predictor, pinhole: Path, distorted: Path) -> list[str]:
    """Errors of images through a lens with it ignored and applied, beside the same images through a pinhole."""
    lens = read_calibration(distorted / CAMERA_INFO)
    shown = " ".join(f"{v:g}" for v in lens.distortion[:4])
    cases = {
        "pinhole images (no lens)": (pinhole, lens.undistorted()),
        f"lens ({shown}) images, lens ignored": (distorted, lens.undistorted()),
        f"lens ({shown}) images, lens applied (camera_info.yaml)": (distorted, lens),
    }
    rows = [
        "| images, camera | translation cm mean (median) | rotation deg mean (median) | given a pose |",
        "|---|---|---|---|",
    ]
    for name, (root, camera) in cases.items():
        truth_t, truth_q, paths = labels(root)
        records = []
        for poses in predictor.predict_items(paths, keep_going=True, camera=camera):
            records += [{"poses": _instances(poses, i)} for i in range(len(poses["valid"]))]
        translations, quaternions = first_poses(records)
        kept = ~np.isnan(translations[:, 0])
        cm = 100 * np.linalg.norm(translations[kept] - truth_t[kept], axis=-1)
        deg = angle_deg(quaternions[kept], truth_q[kept])
        rows.append(
            f"| {name} | {cm.mean():.2f} ({np.median(cm):.2f}) | {deg.mean():.2f} ({np.median(deg):.2f}) "
            f"| {kept.mean():.0%} |"
        )
    return rows


def _instances(poses: dict, index: int) -> list[dict]:
    from cubepose.inference.predictor import instance_records

    return instance_records(poses, index) if poses["valid"][index] else []


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--preset", default="ur3")
    parser.add_argument("--camera", type=float, nargs=6, required=True, metavar=("W", "H", "FX", "FY", "CX", "CY"))
    parser.add_argument("--data-dir", default=str(REPO / "data" / "video"))
    parser.add_argument("--sequences", type=int, default=5, help="static and moving clips each")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--speed", type=float, default=0.1, help="moving clips: peak speed, m/s")
    parser.add_argument("--repeats", type=int, default=2, help="speed: passes over the moving clips")
    parser.add_argument("--distortion-images", type=int, default=200)
    parser.add_argument(
        "--lens", type=float, nargs=4, default=[-0.3, 0.1, 0.0, 0.0], metavar="K", help="k1 k2 p1 p2 of the lens"
    )
    parser.add_argument("--smooth", type=float, nargs=4, default=None, metavar="X", help="One-Euro settings")
    args = parser.parse_args()

    data = Path(args.data_dir)
    camera_flags = ["--preset", args.preset, "--camera", *(f"{v:g}" for v in args.camera)]
    frames = ["--count", str(args.frames)]
    static = [
        generate(data / f"static-{s}", *camera_flags, *frames, "--sequence", "static", "--seed", str(100 + s))
        for s in range(args.sequences)
    ]
    moving = [
        generate(
            data / f"moving-{s}",
            *camera_flags,
            *frames,
            "--sequence",
            "moving",
            "--speed",
            f"{args.speed:g}",
            "--seed",
            str(200 + s),
        )
        for s in range(args.sequences)
    ]
    images = ["--count", str(args.distortion_images), "--seed", "300"]
    pinhole = generate(data / "pinhole", *camera_flags, *images)
    lens = [f"{v:g}" for v in args.lens]
    distorted = generate(data / ("lens" + "_".join(lens)), *camera_flags, *images, "--distortion", *lens)

    predictor = PosePredictor.load(args.checkpoint)
    camera = read_calibration(static[0] / CAMERA_INFO)
    smoothing = SmoothingSettings(*args.smooth) if args.smooth else SmoothingSettings()
    print(f"## {args.checkpoint}: {args.sequences} static and {args.sequences} moving clips of {args.frames} frames\n")
    print("\n".join(speed_table(predictor, moving, camera, args.repeats)), "\n")
    print("\n".join(jitter_table(poses_by_mode(predictor, static, camera, smoothing))), "\n")
    print("\n".join(error_table(poses_by_mode(predictor, moving, camera, smoothing))), "\n")
    print("\n".join(lens_table(predictor, pinhole, distorted)))


if __name__ == "__main__":
    main()
