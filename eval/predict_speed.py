"""Latency and throughput of PosePredictor against the bare model forward pass, A/B in one run.

    .venv/bin/python eval/predict_speed.py configs/cpu.yaml --single 1000 --batches 100

The model of the overlay (over configs/base.yaml) is saved as a checkpoint and loaded
through ``PosePredictor.load``. Single images: each input kind is timed A/B against the bare ``model(tensor)``,
alternating, ``predict([image])`` against the bare forward on an already
prepared (1, 3, S, S) tensor; median and p95 in ms. Batches: ``predict`` of test_batch_size
images against the bare forward of the prepared batch, images/s (median). The overhead is the
median over iterations of ``predict / bare - 1``, each pair timed back to back.

Input kinds: ``array@S`` (uint8 array already at the network size: conversion only),
``array@SRC`` (camera-size array: + resize) and ``png@SRC`` (file path: + decode).
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

from cubepose.checkpoints import save_checkpoint
from cubepose.config import load_config_files
from cubepose.data.images import to_network_range
from cubepose.models import pose_network
from cubepose.predict import PosePredictor

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
    parser.add_argument("overlay", help="config overlay whose model is measured, e.g. configs/cpu.yaml")
    parser.add_argument("--single", type=int, default=300, help="single-image iterations")
    parser.add_argument("--batches", type=int, default=30, help="batched iterations")
    parser.add_argument("--source-size", type=int, default=128, help="camera image side (demo data: 128)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    config = load_config_files(REPO / "configs" / "base.yaml", args.overlay)  # the model runs on the CPU
    size, batch_size = config["network"]["image_size"], config["test_batch_size"]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "model-0.ckpt"
        save_checkpoint(checkpoint, model=pose_network(config).state_dict(), global_step=0, config=config)
        predictor = PosePredictor.load(checkpoint)
        model = predictor.model
        camera = rng.integers(0, 256, (batch_size, args.source_size, args.source_size, 3), dtype=np.uint8)
        small = np.stack([np.asarray(Image.fromarray(a).resize((size, size))) for a in camera])
        png = Path(folder) / "camera.png"
        Image.fromarray(camera[0]).save(png)
        kinds = {f"array@{size}": small[0], f"array@{args.source_size}": camera[0], f"png@{args.source_size}": png}
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
            f"array@{args.source_size}": lambda: predictor.predict(list(camera)),
        }
        # batches first: after thousands of single-image calls the allocator's state slowed later
        # batched predict calls by up to 20% (bare calls much less), an artifact of the order
        batched = ab_pairs(batched_runs, args.batches, warmup=3)
        single = ab_pairs(single_runs, args.single, warmup=20)

    lines = [
        f"{args.overlay}: {config['network']['backbone']} at {size} px; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {args.single} single-image and {args.batches} batched iterations",
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
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
