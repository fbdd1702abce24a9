"""Data pipeline speed and memory on this machine: indexing, decoding, edflow batches vs training.

    .venv/bin/python eval/data_speed.py --captures 30000 --repeats 3

1. Indexing ``--captures`` captures (Unity's training-set size) in both layouts: the JSON
   is synthesised from a few real rendered PNGs, hard-linked once per capture, so every
   capture has its own image file to check. Reports the median time and the Python heap
   peak (tracemalloc) next to what the decoded images would take.
2. Decode + resize throughput of one worker at the CPU config's size and at 224 px.
3. Loading through edflow's own batch iterator with the CPU config's ``n_data_processes``,
   decoding PNGs and from the image cache (``image_cache``), side by side with the training
   throughput of the CPU and GPU-recipe models.
4. With ``--zoom-images N``: the same for the zoom-in recipe (configs/ur3_cpu.yaml, a 512 px input) on N
   images of Unity's UR3 framing (650x400) and of a 640x480 camera, from the image cache.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from edflow.iterators.batches import make_batches
from train_speed import REPO, images_per_second

from cubepose.config import load_config_files
from cubepose.data import TrainDataset
from cubepose.data.formats import read_dataset
from cubepose.data.images import decode_resized
from cubepose.synth.generate import (
    GenerationOptions,
    camera_option,
    chosen_camera,
    generate_dataset,
    scene_options,
)

logger = logging.getLogger("data_speed")
REAL_IMAGES = 32  # distinct rendered images the synthetic captures point to


def median_time(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def replicate(source: Path, out: Path, layout: str, count: int) -> Path:
    """A ``count``-capture dataset whose captures repeat those of ``source``, each with its own (linked) image."""
    if layout == "legacy":
        (json_dir,) = source.glob("Dataset*")
        captures = [c for f in sorted(json_dir.glob("captures_*.json")) for c in json.loads(f.read_text())["captures"]]
        (out / json_dir.name).mkdir(parents=True)
        (out / "RGB").mkdir()
        shutil.copy(json_dir / "annotation_definitions.json", out / json_dir.name)
        chunk: list[dict] = []
        for i in range(count):
            capture = dict(captures[i % len(captures)])
            os.link(source / capture["filename"], out / "RGB" / f"rgb_{i + 2}.png")
            chunk.append({**capture, "filename": f"RGB/rgb_{i + 2}.png"})
            if len(chunk) == 150 or i == count - 1:
                path = out / json_dir.name / f"captures_{i // 150:03d}.json"
                path.write_text(json.dumps({"version": "0.0.1", "captures": chunk}))
                chunk = []
        return out
    frames = [(source / f"sequence.{i}") for i in range(REAL_IMAGES)]
    for i in range(count):
        sequence = out / f"sequence.{i}"
        sequence.mkdir(parents=True)
        frame = frames[i % len(frames)]
        shutil.copy(frame / "step0.frame_data.json", sequence)
        os.link(frame / "step0.camera.png", sequence / "step0.camera.png")
    return out


def indexing_rows(work: Path, count: int, repeats: int) -> list[str]:
    rows = ["| layout | captures | index time, s (median) | heap peak while indexing, MB | decoded 128 px images, MB |"]
    rows.append("|---|---|---|---|---|")
    for layout in ("legacy", "solo"):
        source = generate_dataset(
            work / f"src-{layout}", GenerationOptions(count=REAL_IMAGES, seed=1, image_size=128, format=layout)
        )
        root = replicate(source, work / f"big-{layout}", layout, count)
        seconds = median_time(lambda root=root: read_dataset(root), repeats)
        tracemalloc.start()
        index = read_dataset(root)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        images = len(index) * 128 * 128 * 3 / 2**20
        rows.append(f"| {layout} | {len(index)} | {seconds:.2f} | {peak:.0f} | {images:.0f} |")
    return rows


def decode_rows(datasets: dict[str, Path], sizes: list[int], repeats: int) -> list[str]:
    rows = ["| source images | network size | decode + resize, images/s per worker (median) |", "|---|---|---|"]
    for name, root in datasets.items():
        paths = read_dataset(root).image_paths
        for size in sizes:
            seconds = median_time(lambda paths=paths, size=size: [decode_resized(p, size) for p in paths], repeats)
            rows.append(f"| {name} | {size} | {len(paths) / seconds:.0f} |")
    return rows


def loading_rate(config: dict, batches: int) -> float:
    """Images/s delivered by edflow's batch iterator (chainer MultiprocessIterator) over the train split."""
    dataset = TrainDataset(config)
    iterator = make_batches(
        dataset, config["batch_size"], shuffle=True, n_processes=config["n_data_processes"], n_prefetch=1
    )
    try:
        for _ in range(3):  # the first batches start the worker processes
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        return batches * config["batch_size"] / (time.perf_counter() - start)
    finally:
        iterator.finalize()


VGA_CAMERA = (640, 480, 554.3, 554.3, 320, 240)  # a 640x480 camera with a 60 deg vertical field of view


def zoom_rows(work: Path, count: int, repeats: int, batches: int, train_steps: int) -> list[str]:
    """Loading through edflow (image cache) against the training throughput of configs/ur3_cpu.yaml, for images
    of Unity's UR3 framing and of a 640x480 camera, both with the ur3 preset's scene."""
    zoom = load_config_files(
        REPO / "configs" / "base.yaml", REPO / "configs" / "cpu.yaml", REPO / "configs" / "ur3_cpu.yaml"
    )
    zoom["data"]["cache_dir"] = str(work / "cache")
    train = statistics.median(images_per_second(zoom, train_steps) for _ in range(repeats))
    size = zoom["network"]["image_size"]
    rows = ["| what | images/s (median) | ratio to zoom-in training |", "|---|---|---|"]
    for name, given in (("650x400 (ur3 preset)", None), ("640x480", camera_option(VGA_CAMERA))):
        camera, image_size = chosen_camera("ur3", given, None, None)
        options = GenerationOptions(
            count=count, seed=5, image_size=image_size, scene=scene_options("ur3", camera=camera)
        )
        zoom["data"]["train"]["root"] = str(generate_dataset(work / name.split()[0], options))
        TrainDataset(zoom)  # builds the image cache
        rate = statistics.median(loading_rate(zoom, batches) for _ in range(repeats))
        processes = zoom["n_data_processes"]
        rows.append(
            f"| loading {name} -> {size} px, edflow batches, {processes} processes, image cache | {rate:.0f} | "
        )
        rows[-1] += f"{rate / train:.2f}x |"
    rows.append(f"| training: configs/ur3_cpu.yaml (zoom-in, {size} px input) | {train:.0f} | 1.00 |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captures", type=int, default=30000, help="captures to index (Unity's train set: 30000)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; medians are reported")
    parser.add_argument("--batches", type=int, default=40, help="batches timed through edflow's iterator")
    parser.add_argument("--train-steps", type=int, default=10, help="timed steps of the CPU config's model")
    parser.add_argument("--gpu-steps", type=int, default=2, help="timed steps of the GPU recipe's model (0: skip)")
    parser.add_argument("--decode-images", type=int, default=256, help="128 px images to decode (48 at 480 px)")
    parser.add_argument("--zoom-images", type=int, default=0, help="UR3-framing and 640x480 images (0: skip)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    cpu, gpu = (
        load_config_files(REPO / "configs" / "base.yaml", REPO / "configs" / name) for name in ("cpu.yaml", "gpu.yaml")
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        out = [f"## Indexing ({os.cpu_count()} cores; files in the page cache)", ""]
        out += indexing_rows(work, args.captures, args.repeats)

        demo = generate_dataset(work / "demo", GenerationOptions(count=args.decode_images, seed=2, image_size=128))
        large_count = max(1, args.decode_images // 5)
        large = generate_dataset(work / "large", GenerationOptions(count=large_count, seed=3, image_size=480))
        sizes = [cpu["network"]["image_size"], 224]
        out += ["", "## Decoding", ""]
        out += decode_rows({"128 px (make demo)": demo, "480 px": large}, sizes, args.repeats)

        cpu["data"]["train"]["root"] = str(demo)
        cpu["data"]["cache_dir"] = str(work / "cache")
        decoding = dict(cpu, image_cache=False)
        start = time.perf_counter()
        TrainDataset(cpu)  # builds the image cache of the configured run
        cache_seconds = time.perf_counter() - start
        loading = {}
        for name, config in (("decoding PNGs (image_cache: false)", decoding), ("image cache (cpu.yaml)", cpu)):
            loading[name] = statistics.median(loading_rate(config, args.batches) for _ in range(args.repeats))
        cpu_train = statistics.median(images_per_second(cpu, args.train_steps) for _ in range(args.repeats))
        gpu_train = (
            statistics.median(images_per_second(gpu, args.gpu_steps) for _ in range(args.repeats))
            if args.gpu_steps
            else None
        )
        zoom = (
            zoom_rows(work, args.zoom_images, args.repeats, args.batches, args.train_steps) if args.zoom_images else []
        )
    processes = cpu["n_data_processes"]
    out += ["", "## Loading vs training (CPU)", ""]
    out += ["| what | images/s (median) | ratio to CPU training |", "|---|---|---|"]
    for name, rate in loading.items():
        out.append(f"| loading 128 -> 64 px, edflow batches, {processes} processes, {name} | {rate:.0f} | ")
        out[-1] += f"{rate / cpu_train:.2f}x |"
    out.append(f"| training: configs/cpu.yaml (small_cnn 64 px) | {cpu_train:.0f} | 1.00 |")
    if gpu_train is not None:
        out.append(f"| training: configs/gpu.yaml (vgg16 224 px) on CPU | {gpu_train:.1f} | |")
    out += [
        "",
        f"indexing and caching the {args.decode_images} images once: {cache_seconds:.1f} s (workers' start included)",
    ]
    if zoom:
        out += ["", "## Loading vs training: the zoom-in recipe at 650x400 and 640x480 (CPU)", "", *zoom]
    configured = loading["image cache (cpu.yaml)"]
    verdict = "meets" if configured >= 3 * cpu_train else "MISSES"
    out += ["", f"loading as configured {verdict} the target of 3x the CPU config's training throughput"]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
