"""Training-step throughput of config overlays on this machine, A/B in one run.

    .venv/bin/python eval/train_speed.py configs/cpu.yaml configs/gpu.yaml --steps 5 --repeats 3

For each overlay (merged over configs/base.yaml) it times cubepose's TrainingStep, the step
edflow's train_op runs (forward, criterion, backward, optimizer step; mixed precision and
channels-last where the config and a CUDA ``--device`` enable them), on one batch of random
uint8 images of the configured size with plausible poses, and prints images/s as the median
over repeats.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cubepose.config import load_config_files
from cubepose.geometry.projection import intrinsics_from_fov
from cubepose.models import pose_network
from cubepose.training.step import TrainingStep

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger("train_speed")


def random_batch(config: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """One batch of random images with a cube about 1 m in front of a 60-degree camera."""
    rng = np.random.default_rng(seed)
    batch, size = config["batch_size"], config["network"]["image_size"]
    quaternions = rng.normal(size=(batch, 4))
    return {
        "image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
        "translation": rng.uniform([-0.2, -0.2, 0.8], [0.2, 0.2, 1.2], (batch, 3)),
        "quaternion": quaternions / np.linalg.norm(quaternions, axis=1, keepdims=True),
        "camera": np.broadcast_to(intrinsics_from_fov(60.0, size, size), (batch, 4)),
    }


def images_per_second(config: dict, steps: int, device: str = "cpu") -> float:
    """Time ``steps`` training steps (after one warm-up step) and return images per second."""
    trainer = TrainingStep(pose_network(config), config, num_steps=steps + 1, device=device)
    batch = random_batch(config)
    inputs, targets = trainer.inputs(batch["image"]), trainer.targets(batch)
    trainer.train(inputs, targets, 0)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(steps):
        trainer.train(inputs, targets, step + 1)  # copies the losses to the host: synchronised every step
    return steps * config["batch_size"] / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overlays", nargs="+", help="config overlays, e.g. configs/cpu.yaml configs/gpu.yaml")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; the median is reported")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rows = []
    for overlay in args.overlays:
        config = load_config_files(REPO / "configs" / "base.yaml", overlay)
        rates = [images_per_second(config, args.steps, args.device) for _ in range(args.repeats)]
        rows.append((overlay, config, statistics.median(rates)))
    baseline = rows[0][2]
    lines = [
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads",
        "| config | backbone | image size | batch | train images/s (median) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for overlay, config, rate in rows:
        network = config["network"]
        lines.append(
            f"| {overlay} | {network['backbone']} | {network['image_size']} | {config['batch_size']} "
            f"| {rate:.1f} | {rate / baseline:.3f} |"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
