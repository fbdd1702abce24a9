"""A few data-parallel training steps, run by tests/test_distributed.py: under ``torchrun --nproc_per_node 2``
each rank trains on its share of the real TrainDataset; alone with ``--reference`` one process trains on the
same per-rank batches by accumulating them (what averaging the ranks' gradients computes, each batch
normalised on its own as each rank's batch norm does). Writes the parameters before and after (rank 0) and
each rank's images.

    torchrun --standalone --nproc_per_node 2 tests/distributed_worker.py DATA OUT --steps 3
    python tests/distributed_worker.py DATA OUT --steps 3 --reference
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from conftest import load_configs
from cubepose.config import validate_config
from cubepose.data import TrainDataset
from cubepose.models import pose_network
from cubepose.training.distributed import Ranks, launched_ranks, shard
from cubepose.training.step import TrainingStep

BATCH = 4  # per rank
RANKS = 2


def batch_of(dataset: TrainDataset, indices: np.ndarray) -> dict[str, np.ndarray]:
    examples = [dataset[int(i)] for i in indices]
    return {key: np.stack([example[key] for example in examples]) for key in ("image", "translation", "quaternion")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--reference", action="store_true")
    args = parser.parse_args()
    config = load_configs("base.yaml", "cpu.yaml")
    config["network"]["image_size"] = 32
    config["batch_size"] = BATCH
    config["data"] = {"train": {"root": args.data}}
    config["accumulation_steps"] = RANKS if args.reference else 1
    config = validate_config(config)
    dataset = TrainDataset(config)  # under torchrun: this rank's share
    ranks = launched_ranks()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"images-rank{ranks.rank}.json").write_text(json.dumps(sorted(map(str, dataset.index.image_paths))))
    trainer = TrainingStep(pose_network(config), config, num_steps=args.steps * config["accumulation_steps"])
    if ranks.main:
        torch.save({name: p.detach().clone() for name, p in trainer.network.named_parameters()}, out / "initial.pt")
    if args.reference:
        shares = [shard(len(dataset), Ranks(rank, RANKS)) for rank in range(RANKS)]
        batches = [share[step * BATCH : (step + 1) * BATCH] for step in range(args.steps) for share in shares]
    else:
        batches = [np.arange(step * BATCH, (step + 1) * BATCH) for step in range(args.steps)]
    for step, indices in enumerate(batches):
        batch = batch_of(dataset, indices)
        trainer.train(trainer.inputs(batch["image"]), trainer.targets(batch), step)
    if ranks.main:
        torch.save({name: p.detach().clone() for name, p in trainer.network.named_parameters()}, out / "weights.pt")


if __name__ == "__main__":
    main()
