"""Data-parallel training throughput: 1 rank against N ranks of the same TrainingStep under torchrun, A/B.

    .venv/bin/python eval/ddp_speed.py configs/cpu.yaml --ranks 1 2 --steps 40 --repeats 3

For each rank count the script starts ``torchrun --standalone --nproc_per_node N`` on itself (``--worker``);
every rank builds the overlay's model and cubepose's TrainingStep (DDP over gloo on CPU, NCCL on GPUs: what
`edflow` runs under torchrun), trains ``--steps`` steps on one batch of random images per rank (``batch_size``
per rank, as under edflow) after two warm-up steps, and then times an all-reduce of a buffer as large as the
model's gradients ``--steps`` times: the communication each step pays. Rank 0 prints images/s over all ranks,
ms per step and ms per all-reduce; the rank counts alternate ``--repeats`` times and medians are tabulated.
torchrun gives each of N > 1 ranks one thread (OMP_NUM_THREADS=1); one rank keeps the machine's threads.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from train_speed import random_batch

from cubepose.config import load_recipe
from cubepose.models import pose_network
from cubepose.training.step import TrainingStep

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"
logger = logging.getLogger("ddp_speed")


def worker(overlay: str, steps: int, device: str) -> None:
    """One rank: time the training steps, then the all-reduce of a gradient-sized buffer; rank 0 prints JSON."""
    config = load_recipe(overlay, REPO)
    config["device"] = device
    trainer = TrainingStep(pose_network(config), config, num_steps=steps + 2)
    rank = trainer.ranks.rank
    batch = random_batch(config, seed=rank)  # each rank its own examples
    inputs, targets = trainer.inputs(batch["image"]), trainer.targets(batch)
    for step in range(2):
        trainer.train(inputs, targets, step)
    start = time.perf_counter()
    for step in range(steps):
        trainer.train(inputs, targets, step + 2)  # the host copy of the losses synchronises every step
    step_seconds = (time.perf_counter() - start) / steps
    reduce_seconds = 0.0
    if trainer.ranks.distributed:
        size = sum(p.numel() for p in trainer.network.parameters())
        buffer = torch.zeros(size, device=trainer.device)
        dist.all_reduce(buffer)
        start = time.perf_counter()
        for _ in range(steps):
            dist.all_reduce(buffer)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        reduce_seconds = (time.perf_counter() - start) / steps
    if rank == 0:
        images = trainer.ranks.world * config["batch_size"] / step_seconds
        result = {"images_per_second": images, "step_ms": 1000 * step_seconds, "all_reduce_ms": 1000 * reduce_seconds}
        sys.stdout.write(json.dumps(result) + "\n")


def run_ranks(overlay: str, ranks: int, steps: int, device: str) -> dict:
    """Start ``ranks`` ranks of this script under torchrun and return rank 0's measurements."""
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node", str(ranks), __file__, overlay]
    command += ["--worker", "--steps", str(steps), "--device", device]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"{ranks} ranks failed: {result.stderr[-2000:]}")
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overlay", help="a recipe: overlays and key=value overrides joined by +, e.g. configs/cpu.yaml")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: one GPU per rank")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.overlay, args.steps, args.device)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runs: dict[int, list[dict]] = {ranks: [] for ranks in args.ranks}
    for repeat in range(args.repeats):
        for ranks in args.ranks if repeat % 2 == 0 else reversed(args.ranks):
            runs[ranks].append(run_ranks(args.overlay, ranks, args.steps, args.device))
            logger.info("repeat %d, %d rank(s): %s", repeat + 1, ranks, runs[ranks][-1])
    base = statistics.median(r["images_per_second"] for r in runs[args.ranks[0]])
    lines = [
        f"{args.overlay} on {args.device}: {args.steps} steps per run, {args.repeats} alternated repeats",
        "",
        "| ranks | images/s (median) | ms per step | all-reduce ms per step | all-reduce / step | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for ranks, results in runs.items():
        rate = statistics.median(r["images_per_second"] for r in results)
        step = statistics.median(r["step_ms"] for r in results)
        reduce = statistics.median(r["all_reduce_ms"] for r in results)
        lines.append(f"| {ranks} | {rate:.1f} | {step:.1f} | {reduce:.1f} | {reduce / step:.2f} | {rate / base:.2f}x |")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
