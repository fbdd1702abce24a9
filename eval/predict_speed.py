"""Latency and throughput of PosePredictor against the bare model forward pass, A/B in one run.

    .venv/bin/python eval/predict_speed.py configs/cpu.yaml --single 1000 --batches 100
    .venv/bin/python eval/predict_speed.py configs/cpu.yaml+configs/keypoints_cpu.yaml \
        configs/cpu.yaml+configs/accurate_cpu.yaml --source-size 640 480

The model of the overlay (over configs/base.yaml) is saved as a checkpoint and loaded
through ``PosePredictor.load``. Single images: each input kind is timed A/B against the bare ``model(tensor)``,
alternating, ``predict([image])`` against the bare forward on an already
prepared (1, 3, S, S) tensor; median and p95 in ms. Batches: ``predict`` of test_batch_size
images against the bare forward of the prepared batch, images/s (median). The overhead is the
median over iterations of ``predict / bare - 1``, each pair timed back to back.

Input kinds: ``array@S`` (uint8 array already at the network size: conversion only),
``array@SRC`` (camera-size array: + resize) and ``png@SRC`` (file path: + decode). A keypoint
model's predict includes decoding the keypoints and the PnP solve; its bare forward does not.

An overlay may join files and ``key/path=value`` overrides with ``+``; with several overlays each gets
its tables, and a last table times ``predict`` of one camera-size PNG for every overlay, alternating
(A/B in one run).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cubepose.config import load_recipe
from cubepose.data.images import to_network_range
from cubepose.inference.predictor import PosePredictor
from cubepose.inference.training_camera import record_training_camera
from cubepose.models import pose_network
from cubepose.training.checkpoints import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger("predict_speed")


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) * 1000


def alternate(runs: dict[str, Callable[[], object]], iterations: int, warmup: int) -> dict[str, list[float]]:
    """Time every run once per iteration, the order rotating each time so no run always follows another."""
    names = list(runs)
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in names}
    for iteration in range(iterations):
        shift = iteration % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(runs[name]))
    return times


def ab_pairs(runs: dict[str, Callable[[], object]], iterations: int, warmup: int) -> dict[str, tuple[list, list]]:
    """Each run A/B against the first (the bare forward), alternating; -> name: (its times, paired bare times).

    Pairs keep one run's cache and memory traffic (say, PIL resizing) from slowing the others.
    """
    bare_name, *others = runs
    results = {}
    for name in others:
        times = alternate({bare_name: runs[bare_name], name: runs[name]}, iterations, warmup)
        results.setdefault(bare_name, (times[bare_name], times[bare_name]))
        results[name] = (times[name], times[bare_name])
    return results


def paired_overhead(samples: list[float], bare: list[float]) -> str:
    """Median over iterations of time / bare time of the same iteration, minus 1: robust to drifting clocks."""
    if samples is bare:
        return "-"
    return f"{statistics.median(np.divide(samples, bare)) - 1:+.1%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overlay", nargs="+", help="config overlays (A.yaml+B.yaml) whose models are measured")
    parser.add_argument("--single", type=int, default=300, help="single-image iterations")
    parser.add_argument("--batches", type=int, default=30, help="batched iterations")
    parser.add_argument(
        "--source-size", type=int, nargs="+", default=[128], metavar="W [H]", help="camera image size (demo: 128)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    width, height = (args.source_size * 2)[:2]
    lines: list[str] = []
    single_png: dict[str, Callable[[], object]] = {}
    with tempfile.TemporaryDirectory() as folder:
        png = Path(folder) / "camera.png"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(png)
        for overlay in args.overlay:
            predictor = measured_predictor(overlay, Path(folder))
            lines += overlay_tables(overlay, predictor, png, args.single, args.batches, (width, height))
            single_png[overlay] = lambda predictor=predictor: predictor.predict([png])
        if len(single_png) > 1:
            times = alternate(single_png, args.single, warmup=20)
            lines += ["", f"| predict one png@{width}x{height}, alternating | median ms | p95 ms |", "|---|---|---|"]
            for overlay, samples in times.items():
                lines.append(f"| {overlay} | {percentile_ms(samples, 50):.3f} | {percentile_ms(samples, 95):.3f} |")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def measured_predictor(overlay: str, folder: Path) -> PosePredictor:
    """The overlay's model (fresh weights) saved as a checkpoint and loaded through ``PosePredictor.load``."""
    config = load_recipe(overlay, REPO)  # the model runs on the CPU
    checkpoint = folder / f"model-{abs(hash(overlay))}.ckpt"
    side = config["network"]["image_size"]
    camera = record_training_camera(np.array([[side, side, side / 2, side / 2]]), side)
    save_checkpoint(checkpoint, model=pose_network(config).state_dict(), global_step=0, config=config, camera=camera)
    return PosePredictor.load(checkpoint)


def overlay_tables(
    overlay: str, predictor: PosePredictor, png: Path, singles: int, batches: int, source: tuple[int, int]
) -> list[str]:
    """The single-image and batched tables of one overlay's predictor."""
    config = predictor.config
    size, batch_size = config["network"]["image_size"], config["test_batch_size"]
    model = predictor.model
    source_name = f"{source[0]}x{source[1]}" if source[0] != source[1] else str(source[0])
    rng = np.random.default_rng(0)
    camera = rng.integers(0, 256, (batch_size, source[1], source[0], 3), dtype=np.uint8)
    small = np.stack([np.asarray(Image.fromarray(a).resize((size, size))) for a in camera])
    kinds = {f"array@{size}": small[0], f"array@{source_name}": camera[0], f"png@{source_name}": png}
    # the bare pass gets float inputs in [-1, 1], in the layout training feeds (NHWC memory)
    prepared = torch.from_numpy(to_network_range(small[:1])).permute(0, 3, 1, 2)
    batch_prepared = torch.from_numpy(to_network_range(small)).permute(0, 3, 1, 2)

    def bare(inputs: torch.Tensor) -> Callable[[], object]:
        def forward() -> object:
            with torch.inference_mode():
                return model(inputs)

        return forward

    single_runs = {"bare forward": bare(prepared)}
    for name, item in kinds.items():
        single_runs[name] = lambda item=item: predictor.predict([item])
    batched_runs = {
        "bare forward": bare(batch_prepared),
        f"array@{size}": lambda: predictor.predict(list(small)),
        f"array@{source_name}": lambda: predictor.predict(list(camera)),
    }
    # batches first: after thousands of single-image calls the allocator's state slowed later
    # batched predict calls by up to 20% (bare calls much less), an artifact of the order
    batched = ab_pairs(batched_runs, batches, warmup=3)
    single = ab_pairs(single_runs, singles, warmup=20)

    network = config["network"]
    kind = {"keypoints": "keypoints", "zoom": "zoom-in"}.get(network["type"], network["backbone"])
    lines = [
        "",
        f"{overlay}: {kind} at {size} px; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {singles} single-image and {batches} batched iterations",
        "",
        "| single image | median ms | p95 ms | overhead vs bare (median of paired ratios) |",
        "|---|---|---|---|",
    ]
    for name, (samples, bare) in single.items():
        lines.append(
            f"| {name} | {percentile_ms(samples, 50):.3f} | {percentile_ms(samples, 95):.3f} | "
            f"{paired_overhead(samples, bare)} |"
        )
    lines += ["", f"| batch of {batch_size} | images/s (median) | overhead vs bare (median of paired ratios) |"]
    lines.append("|---|---|---|")
    for name, (samples, bare) in batched.items():
        rate = batch_size / statistics.median(samples)
        lines.append(f"| {name} | {rate:.0f} | {paired_overhead(samples, bare)} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
