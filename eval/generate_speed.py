"""`cubepose generate` speed on this machine: images/s by size, layout and workers, A/B in one run.

    .venv/bin/python eval/generate_speed.py --count 1000 --repeats 3 [--unity-sets]
    .venv/bin/python eval/generate_speed.py --sizes --resolution 640 480 --resolution 650 400
    .venv/bin/python eval/generate_speed.py --sizes --camera 640 480 600 610 300 250

Each row generates ``--count`` images from scratch (process start-up included) and reports
the median images/s over repeats. A per-image breakdown of one process's stages follows (for the
first row's camera). ``--sizes`` times square images (a bare ``--sizes`` none), ``--resolution W H``
a centred camera of 60 deg vertical field of view, ``--camera W H FX FY CX CY`` a camera in pixels
(both repeatable). ``--unity-sets`` also times the 30,000 + 3,000 image train/validation sets of
Unity's tutorial.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cubepose.geometry.camera import Camera
from cubepose.synth.generate import PNG_COMPRESSION, GenerationOptions, camera_option, generate_dataset
from cubepose.synth.gl_renderer import GLRenderer
from cubepose.synth.scene import SceneOptions, sample_scene

logger = logging.getLogger("generate_speed")


def rate(work: Path, options: GenerationOptions, repeats: int) -> float:
    """Median images/s of generating ``options`` from an empty folder."""
    rates = []
    for _ in range(repeats):
        out = work / "out"
        start = time.perf_counter()
        generate_dataset(out, options)
        rates.append(options.count / (time.perf_counter() - start))
        shutil.rmtree(out)
    return statistics.median(rates)


def cameras_to_time(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """(row label, GenerationOptions keywords) of each square size, resolution and camera to time."""
    rows = [(str(size), {"image_size": size}) for size in args.sizes]
    for width, height in args.resolution or []:
        rows.append((f"{width}x{height}", {"scene": SceneOptions(camera=Camera.from_fov(60.0, width, height))}))
    for values in args.camera or []:
        camera = camera_option(values)
        label = f"{camera.width}x{camera.height} (fx {camera.fx:g} fy {camera.fy:g} cx {camera.cx:g} cy {camera.cy:g})"
        rows.append((label, {"scene": SceneOptions(camera=camera)}))
    return rows


def stage_times(image: dict, count: int) -> dict[str, float]:
    """Mean milliseconds per image of each stage in one process, for the camera of GenerationOptions keywords."""
    options = GenerationOptions(1, **image)
    renderer = GLRenderer(*options.resolution)
    totals = dict.fromkeys(("scene sampling", "OpenGL render, blur + noise, readback", "PNG encode"), 0.0)
    for index in range(count):
        marks = [time.perf_counter()]
        scene = sample_scene(np.random.default_rng([0, index, 0]), options.scene)
        marks.append(time.perf_counter())
        image = renderer.render(scene)
        marks.append(time.perf_counter())
        Image.fromarray(image).save(io.BytesIO(), format="PNG", compress_level=PNG_COMPRESSION)
        marks.append(time.perf_counter())
        for key, begin, end in zip(totals, marks, marks[1:], strict=False):
            totals[key] += end - begin
    renderer.release()
    return {key: 1000 * total / count for key, total in totals.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="images per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; the median is reported")
    parser.add_argument("--sizes", type=int, nargs="*", default=[224, 128], help="square image sizes (bare: none)")
    parser.add_argument(
        "--resolution", type=int, nargs=2, action="append", metavar=("W", "H"), help="W x H, centred, 60 deg"
    )
    parser.add_argument(
        "--camera",
        type=float,
        nargs=6,
        action="append",
        metavar=("W", "H", "FX", "FY", "CX", "CY"),
        help="a camera in pixels, as cubepose generate --camera",
    )
    parser.add_argument("--unity-sets", action="store_true", help="also time 30,000 + 3,000 images at 224 px")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cores = os.cpu_count() or 1

    images = cameras_to_time(args)
    if not images:
        parser.error("nothing to time: give --sizes, --resolution or --camera")
    out = [f"| image size | layout | workers | images/s (median of {args.repeats}) | ratio to 1 worker |"]
    out.append("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for label, image in images:
            for layout in ("legacy", "solo"):
                single = None
                for workers in sorted({1, cores}):
                    options = GenerationOptions(args.count, seed=1, format=layout, workers=workers, **image)
                    measured = rate(work, options, args.repeats)
                    single = single or measured
                    out.append(f"| {label} | {layout} | {workers} | {measured:.0f} | {measured / single:.2f} |")
        stages = stage_times(images[0][1], min(args.count, 300))
        out += ["", f"| stage (one process, {images[0][0]} px) | ms per image |", "|---|---|"]
        out += [f"| {stage} | {ms:.2f} |" for stage, ms in stages.items()]
        if args.unity_sets:
            start = time.perf_counter()
            for name, count, seed in (("train", 30000, 1), ("validation", 3000, 2)):
                options = GenerationOptions(count, seed=seed, image_size=224, workers=cores)
                generate_dataset(work / "unity" / name, options)
            minutes = (time.perf_counter() - start) / 60
            out += ["", f"Unity's 30,000 + 3,000 images at 224 px with {cores} workers: {minutes:.1f} min"]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
