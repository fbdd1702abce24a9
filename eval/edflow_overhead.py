"""edflow's overhead per training step: the same model, data and steps through `edflow` and a bare loop.

    .venv/bin/python eval/edflow_overhead.py configs/cpu.yaml --short 20 --long 170 --repeats 3

Both arms train the overlay's model on the same generated set with the image cache: `edflow -t`
(a subprocess, as users run it: chainer batches, hooks, logging, the Iterator) and a bare loop
in this process driving the same TrainingStep that edflow's train_op runs (batches gathered
from the cache with one numpy index). Each arm runs ``--short`` and ``--long`` steps; the time per
step is (T_long - T_short) / (long - short), which cancels start-up, dataset loading and the
final checkpoint. The arms alternate, A/B, ``--repeats`` times; medians and their ratio are
printed. ``long`` stays inside the first epoch, so no epoch-end evaluation is timed, and logging
is pushed past the measured steps.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from accuracy import batches, make_data, train_through_edflow

from cubepose.config import load_config_files
from cubepose.data import TrainDataset
from cubepose.models import pose_network
from cubepose.training.step import TrainingStep

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger("edflow_overhead")


def edflow_seconds(overlay: str, steps: int, data: dict[str, Path], work: Path) -> float:
    """Wall time of `edflow -t` for ``steps`` steps (start-up included), logging pushed past them."""
    quiet = ("--log_freq", "100000", "--start_log_freq", "100000")
    return train_through_edflow([overlay], steps, data, work, quiet)[1]


def bare_seconds(config: dict, dataset: TrainDataset, steps: int) -> float:
    """Wall time of ``steps`` TrainingSteps in this process, model and optimizer built inside (as edflow does)."""
    start = time.perf_counter()
    trainer = TrainingStep(pose_network(config), config, num_steps=steps)
    stream = batches(dataset, config["batch_size"], config["seed"])
    for step in range(steps):
        batch = next(stream)
        trainer.train(trainer.inputs(batch["image"]), trainer.targets(batch), step)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overlay", help="config overlay, e.g. configs/cpu.yaml")
    parser.add_argument("--short", type=int, default=20, help="steps of the short runs")
    parser.add_argument("--long", type=int, default=170, help="steps of the long runs (inside the first epoch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-count", type=int, default=6000)
    parser.add_argument("--test-count", type=int, default=500, help="validation images edflow loads (not timed)")
    parser.add_argument("--image-size", type=int, default=128, help="side of the generated images")
    parser.add_argument(
        "--data-dir", default=str(REPO / "data" / "accuracy"), help="generated sets (shared with accuracy.py)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    data = make_data(Path(args.data_dir), "yaw", args.train_count, args.test_count, args.image_size)
    config = load_config_files(REPO / "configs" / "base.yaml", args.overlay)
    config["data"]["train"]["root"] = str(data["train"])
    config["image_cache"] = True
    dataset = TrainDataset(config)
    if args.long * config["batch_size"] > len(dataset):
        raise SystemExit(f"--long {args.long} steps leave the first epoch of {len(dataset)} images; lower it")
    per_step: dict[str, list[float]] = {"edflow": [], "bare loop": []}
    with tempfile.TemporaryDirectory() as work:
        for repeat in range(args.repeats):
            for arm in ("edflow", "bare loop") if repeat % 2 == 0 else ("bare loop", "edflow"):
                if arm == "edflow":
                    times = [edflow_seconds(args.overlay, n, data, Path(work)) for n in (args.short, args.long)]
                else:
                    times = [bare_seconds(config, dataset, n) for n in (args.short, args.long)]
                per_step[arm].append((times[1] - times[0]) / (args.long - args.short))
                logger.info("repeat %d, %s: %.1f ms per step", repeat + 1, arm, per_step[arm][-1] * 1000)
    edflow, bare = statistics.median(per_step["edflow"]), statistics.median(per_step["bare loop"])
    lines = [
        f"{args.overlay}: {config['network']['backbone']} at {config['network']['image_size']} px, batch "
        f"{config['batch_size']}, {config['n_data_processes']} data processes; steps {args.short} vs {args.long}, "
        f"{args.repeats} alternated repeats",
        "",
        "| arm | ms per step (median) | runs (ms) |",
        "|---|---|---|",
    ]
    for arm, values in per_step.items():
        runs = ", ".join(f"{v * 1000:.1f}" for v in values)
        lines.append(f"| {arm} | {statistics.median(values) * 1000:.1f} | {runs} |")
    lines += ["", f"edflow / bare loop: {edflow / bare:.3f} (overhead {edflow / bare - 1:+.1%}; target below +10%)"]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
