"""Training-step throughput of config overlays on this machine, A/B in one run.

    .venv/bin/python eval/train_speed.py configs/cpu.yaml configs/gpu.yaml --steps 5 --repeats 3

For each overlay (merged over configs/base.yaml, run on the CPU) it times forward +
backward + optimizer step of the real PoseNet and Criterion on random images of the
configured size and batch, and prints images/s as the median over repeats.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

from cubepose.config import load_config_files
from cubepose.losses import Criterion
from cubepose.models import PoseNet
from cubepose.optim import GradientAccumulator, build_optimizer

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger("train_speed")


def images_per_second(config: dict, steps: int) -> float:
    """Time ``steps`` training steps (after one warm-up step) and return images per second."""
    size, batch = config["network"]["image_size"], config["batch_size"]
    model = PoseNet(config).train()
    criterion = Criterion.from_config(config)
    accumulator = GradientAccumulator(build_optimizer(model.parameters(), config["optimizer"]), 1)
    images = torch.randn(batch, 3, size, size)
    targets = {"translation": torch.randn(batch, 3), "quaternion": torch.nn.functional.normalize(torch.randn(batch, 4))}

    def step() -> None:
        accumulator.backward(criterion(model(images), targets)["total"].mean())

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overlays", nargs="+", help="config overlays, e.g. configs/cpu.yaml configs/gpu.yaml")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; the median is reported")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rows = []
    for overlay in args.overlays:
        config = load_config_files(REPO / "configs" / "base.yaml", overlay)  # the model runs on the CPU
        rates = [images_per_second(config, args.steps) for _ in range(args.repeats)]
        rows.append((overlay, config, statistics.median(rates)))
    baseline = rows[0][2]
    lines = [
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
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
