"""Accuracy under a fixed wall-clock budget (or step count) on this machine: Unity's recipe vs cubepose's.

    .venv/bin/python eval/accuracy.py --budget-minutes 15 --rotation yaw
    .venv/bin/python eval/accuracy.py --steps 1600 --train-count 10000 --rows <name> --edflow

Generates seeded train and test sets with ``cubepose generate`` (kept in --data-dir and reused),
trains each row's config with cubepose's TrainingStep (the step edflow's train_op runs; images
from the image cache, batches gathered with one numpy index per step) and evaluates with the
PosePredictor on the separate test set. It prints one markdown table with Unity's two metrics,
cm, degrees and the 5 cm 5 deg accuracy. Under a budget the cosine schedule's horizon is the step
count the first 20 steps' speed predicts; ``--steps`` fixes it. ``--edflow`` trains each row
once more through the real ``edflow -t`` for the same number of steps on the same data and
adds its row, evaluated by the same predictor, to cross-check this harness.

``--preset ur3`` renders Unity's UR3 framing (650x400, the cube 1.7-2.5 m away); ``--fov LO HI`` trains
with a vertical field of view drawn from that range (``--image-size LO HI``, ``--aspect LO HI`` and
``--principal-jitter S`` randomise the rest of the camera), and ``--test-fov A B ...`` adds a test set
per angle, ``--test-camera W H FX FY CX CY`` one per camera, so a row also shows its error with cameras
it was not trained with; ``--test-style NAME`` (repeatable) one per held-apart look (structured, photos,
camera, letters), the same test scenes in a look no training set shares. ``--objects MIN MAX`` and
``--empty-fraction F`` render several cubes per image
(train with ``configs/several.yaml``): the predictions are matched to the cubes, and the table adds recall
and precision, average precision and the prediction speed. Each row is evaluated on 500
training images too (the last column), so under- and overfitting show; the worst cases show as the
99th percentile and maximum translation error of the poses given out, beside how many were withheld.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cubepose.config import load_recipe
from cubepose.data import TestDataset, TrainDataset
from cubepose.errors import ConfigError
from cubepose.evaluation.evaluator import Evaluation, ImageGeometry
from cubepose.evaluation.outputs import TRUTH_KEYS, EvalOutputs
from cubepose.geometry.object import Box
from cubepose.inference.predictor import PosePredictor
from cubepose.models import pose_network
from cubepose.synth.generate import GenerationOptions, camera_option, generate_dataset, scene_options
from cubepose.synth.scene import PRESET_CAMERAS, PRESETS, STYLES
from cubepose.training.seeding import seed_global_generators
from cubepose.training.step import TARGET_KEYS, TrainingStep

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger("accuracy")

# cubepose's row runs first: in exploratory runs the first row of a process trained ~20% fewer
# images/s than later ones, so this order can only disadvantage cubepose's recipe, not Unity's.
ROWS = {
    "cubepose keypoints (`keypoints_cpu.yaml`: heatmaps + offsets of centre and corners at stride 4 of 128 px, PnP)": [
        "configs/cpu.yaml",
        "configs/keypoints_cpu.yaml",
    ],
    "cubepose CPU (`accurate_cpu.yaml`: locate at 64 px, 6D rotation from a 48 px crop, window + geodesic + ADD)": [
        "configs/cpu.yaml",
        "configs/accurate_cpu.yaml",
    ],
    "Unity's recipe, CPU-scaled (`unity_cpu.yaml`: vgg16 64 px, MSE + MSE)": ["configs/unity_cpu.yaml"],
}
SPEED_PROBE_STEPS = 20


def batches(dataset: TrainDataset, batch_size: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """Endless shuffled batches from the image cache (uint8): one sorted fancy index per batch, no per-sample loop."""
    rng = np.random.default_rng(seed)
    labels = {key: dataset.labels[key].astype(np.float32) for key in TARGET_KEYS if key in dataset.labels}
    while True:
        order = rng.permutation(len(dataset))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            chosen = np.sort(order[start : start + batch_size])
            yield {"image": dataset.images[chosen], **{key: value[chosen] for key, value in labels.items()}}


def train_for(
    config: dict, dataset: TrainDataset, budget_s: float | None = None, steps: int | None = None
) -> tuple[torch.nn.Module, int, float]:
    """Train ``config``'s model for ``budget_s`` seconds or for ``steps`` steps; returns (model, steps, train img/s)."""
    seed_global_generators(config["seed"])
    network = pose_network(config)
    trainer = TrainingStep(network, config, num_steps=steps)  # no steps: constant lr until the speed is known
    stream = batches(dataset, config["batch_size"], config["seed"])

    def step(index: int) -> None:
        batch = next(stream)
        trainer.train(trainer.inputs(batch["image"]), trainer.targets(batch), index)

    start = time.perf_counter()
    index = 0
    if steps is not None:
        for index in tqdm(range(steps), desc="training", unit="step"):
            step(index)
        index = steps
    else:
        for index in range(SPEED_PROBE_STEPS):
            step(index)
        index = SPEED_PROBE_STEPS
        trainer.schedule(math.ceil(budget_s / ((time.perf_counter() - start) / SPEED_PROBE_STEPS)))
        with tqdm(total=round(budget_s), desc="training", unit="s") as bar:
            while (elapsed := time.perf_counter() - start) < budget_s:
                step(index)
                index += 1
                bar.n = min(round(elapsed), bar.total)
                bar.refresh()
    return network.eval(), index, index * config["batch_size"] / (time.perf_counter() - start)


def evaluate(predictor: PosePredictor, dataset: TestDataset | TrainDataset, limit: int | None = None) -> dict:
    """Unity's and the standard metrics of the predictor on the dataset's cached images (the first ``limit``);
    a keypoint model solves each pose with that example's camera, and its mean confidence is reported."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    size = predictor.batch_size  # np.array below: a writable copy, memmap slices are read-only
    cameras = dataset.labels["camera"]
    start = time.perf_counter()
    outputs = [
        predictor.predict_batch(np.array(dataset.images[i : min(i + size, count)]), cameras[i : min(i + size, count)])
        for i in range(0, count, size)
    ]
    rate = count / (time.perf_counter() - start)
    box = Box.from_config(predictor.config)
    images = ImageGeometry(dataset.labels["original_camera"][:count], dataset.labels["original_size"][:count, 0])
    predicted = {key: np.concatenate([batch[key] for batch in outputs]) for key in outputs[0] if key != "valid"}
    truth = {key: values[:count] for key, values in dataset.labels.items() if key in TRUTH_KEYS}
    evaluated = Evaluation.of(EvalOutputs.of(predicted, truth), box, images)  # several instances: matched
    metrics = {**evaluated.unity, **evaluated.pose, "predict_images_per_s": rate}
    return metrics


def train_through_edflow(
    recipe: list[str], steps: int, data: dict[str, Path], work: Path, options: tuple[str, ...] = ()
) -> tuple[Path, float]:
    """``edflow -t`` on base.yaml + the recipe's overlays and overrides for ``steps`` steps, as users run it.

    ``options`` are further edflow arguments. Returns the final checkpoint and the command's wall
    time (start-up and evaluations included).
    """
    command = [str(Path(sys.executable).parent / "edflow"), "-n", "accuracy", "-b", str(REPO / "configs" / "base.yaml")]
    command += [str(REPO / item) for item in recipe if "=" not in item] + ["-t", "--num_steps", str(steps)]
    for key, value in (item.split("=", 1) for item in recipe if "=" in item):
        command += [f"--{key}", value]
    command += ["--image_cache", "true", "--data/train/root", str(data["train"])]
    command += ["--data/validation/root", str(data["test"]), *options]
    folder = Path(tempfile.mkdtemp(dir=work))  # edflow's logs/ of this run alone
    start = time.perf_counter()
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"edflow failed:\n{result.stderr[-3000:]}")
    (checkpoint,) = folder.glob(f"logs/*_accuracy/train/checkpoints/model-{steps}.ckpt")
    return checkpoint, elapsed


def table_row(name: str, steps: int, rate: str, metrics: dict, seen: dict | None = None) -> str:
    """One markdown row of the results table; ``seen``: the same metrics on training images, shown beside."""
    cells = [name, steps, rate, f"{metrics['translation_mse']:.5f}", f"{metrics['orientation_error']:.3f}"]
    cells += [f"{metrics['translation_error_cm_mean']:.2f}", f"{metrics['rotation_error_deg_mean']:.2f}"]
    cells += [f"{metrics['accuracy_5cm_5deg']:.3f}", f"{metrics['ar_mssd']:.3f} / {metrics['ar_mspd']:.3f}"]
    cells += [f"{metrics['translation_error_cm_p99']:.2f} / {metrics['translation_error_cm_max']:.2f}"]
    cells += [str(metrics.get("withheld_predictions", 0))]
    cells += [f"{seen['translation_error_cm_mean']:.2f} / {seen['rotation_error_deg_mean']:.2f}" if seen else ""]
    if "recall_5cm_5deg" in metrics:  # several instances per image
        cells += [f"{metrics['recall_5cm_5deg']:.3f} / {metrics['precision_5cm_5deg']:.3f}"]
        cells += [f"{metrics['ap_5cm_5deg']:.3f}", f"{metrics['predict_images_per_s']:.0f}"]
    return "| " + " | ".join(map(str, cells)).rstrip() + " |"


def make_data(
    root: Path,
    rotation: str,
    train_count: int,
    test_count: int,
    image_size: int | tuple[int, int],
    camera: list[float] | None = None,
    dimensions: list[float] | None = None,
    preset: str = "default",
    fov: list[float] | None = None,
    test_fovs: list[float] = (),
    aspect: list[float] | None = None,
    principal_jitter: float | None = None,
    test_cameras: list[list[float]] = (),
    objects: list[int] | None = None,
    empty_fraction: float | None = None,
    test_styles: list[str] = (),
) -> dict[str, Path]:
    """Seeded train (seed 1) and test (seed 3) sets; generation resumes and is reused when complete.

    ``camera`` (W H FX FY CX CY, replacing ``image_size`` and the preset's camera), ``dimensions`` (the
    object's x y z in metres), ``preset``, and the camera's randomisation for both sets (``fov``: a vertical
    field-of-view range; ``image_size`` as a range of heights, ``aspect``, ``principal_jitter``) render a set
    of their own, in a folder named after them (SOLO, which records each image's camera, when randomised);
    each of ``test_fovs`` adds a test set ``test@<fov>``, each of ``test_cameras`` a set ``test@<W>x<H>...``.
    ``objects`` (MIN MAX instances per image) and ``empty_fraction`` render scenes of several instances.
    Each of ``test_styles`` adds a held-apart test set ``test@style-<name>``: the test set's scenes (same seed,
    same poses) in that look (cubepose.synth.styles), in a folder of its own that no training reads.
    """
    randomised = bool(fov or aspect or principal_jitter or not isinstance(image_size, int))
    chosen = camera_option(camera) if camera else (None if randomised else PRESET_CAMERAS.get(preset))
    scene = scene_options(
        preset,
        rotation=rotation,
        camera=chosen,
        dimensions=tuple(dimensions) if dimensions else None,
        vertical_fov_deg=tuple(fov) if fov else None,
        aspect=tuple(aspect) if aspect else None,
        principal_jitter=principal_jitter,
        objects=tuple(objects) if objects else None,
        empty_fraction=empty_fraction,
    )
    name = rotation + (f"-{preset}" if preset != "default" else "")
    name += f"-camera-{'x'.join(f'{v:g}' for v in camera)}" if camera else ""
    name += f"-object-{'x'.join(f'{v:g}' for v in dimensions)}" if dimensions else ""
    name += f"-fov-{fov[0]:g}-{fov[1]:g}" if fov else ""
    name += f"-heights-{image_size[0]}-{image_size[1]}" if not isinstance(image_size, int) else ""
    name += f"-aspect-{aspect[0]:g}-{aspect[1]:g}" if aspect else ""
    name += f"-jitter-{principal_jitter:g}" if principal_jitter else ""
    name += f"-objects-{objects[0]}-{objects[1]}" if objects else ""
    name += f"-empty-{empty_fraction:g}" if empty_fraction else ""
    size = {} if chosen else {"image_size": image_size}
    if randomised:  # a camera per image: only SOLO records one
        size["format"] = "solo"
    splits = {"train": (train_count, 1, scene, size), "test": (test_count, 3, scene, size)}
    for angle in test_fovs:
        fixed = replace(scene, vertical_fov_deg=(angle, angle), aspect=(1.0, 1.0), principal_jitter=0.0)
        square = {"image_size": image_size if isinstance(image_size, int) else image_size[1], "format": "solo"}
        splits[f"test@{angle:g}"] = (test_count, 3, fixed, square)
    for values in test_cameras:
        centred = {"vertical_fov_deg": (60.0, 60.0), "aspect": (1.0, 1.0), "principal_jitter": 0.0}
        fixed = replace(scene, camera=camera_option(values), **centred)
        splits[f"test@{camera_name(values)}"] = (test_count, 3, fixed, {"format": "solo"})
    for style in test_styles:
        splits[f"test@style-{style}"] = (test_count, 3, replace(scene, style=style), size)
    for split, (count, seed, split_scene, split_size) in splits.items():
        options = GenerationOptions(count, seed, scene=split_scene, workers=os.cpu_count() or 1, **split_size)
        generate_dataset(root / name / split, options)
    return {split: root / name / split for split in splits}


def camera_name(values: list[float]) -> str:
    """A test camera as its folder and row name: W x H, then fx fy cx cy."""
    width, height, *intrinsics = values
    return f"{width:g}x{height:g}-" + "-".join(f"{v:g}" for v in intrinsics)


def tested_with(split: str) -> str:
    """How a row evaluated on test set ``split`` (``test@40``, ``test@650x400-...``) is named in the table."""
    given = split.removeprefix("test@")
    if given.startswith("style-"):
        return f"held-apart look: {given.removeprefix('style-')}"
    if "x" not in given:
        return f"tested at {given} deg FOV"
    size, intrinsics = given.split("-", 1)
    return f"tested with a {size} camera (fx fy cx cy {intrinsics.replace('-', ' ')})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, default=15.0, help="training time per row")
    parser.add_argument("--rotation", choices=["yaw", "full"], default="yaw", help="yaw (Unity's setting) or full 3D")
    parser.add_argument("--train-count", type=int, default=30000, help="training images (Unity's demo: 30,000)")
    parser.add_argument("--test-count", type=int, default=500)
    parser.add_argument(
        "--image-size", type=int, nargs="+", default=[128], help="side of the generated images, or a range of heights"
    )
    parser.add_argument("--aspect", type=float, nargs=2, metavar=("LO", "HI"), help="image width / height range")
    parser.add_argument("--principal-jitter", type=float, help="principal point off centre by up to this share")
    parser.add_argument(
        "--camera", type=float, nargs=6, metavar=("W", "H", "FX", "FY", "CX", "CY"), help="render with this camera"
    )
    parser.add_argument(
        "--object-dimensions", type=float, nargs=3, metavar=("X", "Y", "Z"), help="the object's edges (m), all rows"
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default", help="the scene (ur3: Unity's framing)")
    parser.add_argument(
        "--fov", type=float, nargs=2, metavar=("LO", "HI"), help="vertical field of view range (deg), square images"
    )
    parser.add_argument(
        "--test-fov", type=float, nargs="+", default=[], metavar="DEG", help="extra test sets at these fields of view"
    )
    parser.add_argument(
        "--test-camera",
        type=float,
        nargs=6,
        action="append",
        default=[],
        metavar=("W", "H", "FX", "FY", "CX", "CY"),
        help="an extra test set rendered with this camera (repeatable)",
    )
    parser.add_argument(
        "--test-style",
        action="append",
        default=[],
        choices=[style for style in STYLES if style != "randomised"],
        help="a held-apart test set of the test scenes in this look (repeatable): never trained on",
    )
    parser.add_argument("--objects", type=int, nargs=2, metavar=("MIN", "MAX"), help="instances of the cube per image")
    parser.add_argument("--empty-fraction", type=float, help="share of images without the cube")
    parser.add_argument("--data-dir", default=str(REPO / "data" / "accuracy"), help="where the sets are generated")
    parser.add_argument("--steps", type=int, help="train each row for this many steps instead of the budget")
    parser.add_argument(
        "--edflow", action="store_true", help="cross-check: train each row again through `edflow -t`, same steps"
    )
    parser.add_argument("--rows", nargs="*", help="row names to run (default: all)")
    parser.add_argument("--save-dir", help="save each row's trained model here as row-<N>.ckpt (N from 0)")
    parser.add_argument(
        "--recipe",
        action="append",
        metavar="A.yaml+B.yaml+key/path=value",
        help="benchmark these overlays of base.yaml and key=value overrides (YAML values, as edflow's "
        "--key value), joined by +, instead of the built-in rows; repeatable",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    recipes = {recipe: recipe.split("+") for recipe in args.recipe} if args.recipe else dict(ROWS)
    if args.object_dimensions:  # every row trains for the data's object
        size = "[" + ",".join(f"{v:g}" for v in args.object_dimensions) + "]"
        recipes = {name: [*overlays, f"object/dimensions={size}"] for name, overlays in recipes.items()}
    configs = {}
    for name, overlays in recipes.items():  # every config is checked before any data or training
        if args.rows and name not in args.rows:
            continue
        try:
            configs[name] = load_recipe("+".join(overlays), REPO)
        except (ConfigError, OSError) as err:
            parser.error(f"recipe {name!r}: {err}")

    image_size = args.image_size[0] if len(set(args.image_size)) == 1 else (args.image_size[0], args.image_size[-1])
    sizes = (args.train_count, args.test_count, image_size, args.camera, args.object_dimensions)
    extra = {"aspect": args.aspect, "principal_jitter": args.principal_jitter, "test_cameras": args.test_camera}
    extra.update(objects=args.objects, empty_fraction=args.empty_fraction, test_styles=args.test_style)
    data = make_data(Path(args.data_dir), args.rotation, *sizes, args.preset, args.fov, args.test_fov, **extra)
    budget_s = None if args.steps else args.budget_minutes * 60
    length = f"{args.steps} steps" if args.steps else f"{args.budget_minutes:g} min of training"
    randomised = args.fov or args.aspect or args.principal_jitter or not isinstance(image_size, int)
    camera = camera_option(args.camera) if args.camera else (None if randomised else PRESET_CAMERAS.get(args.preset))
    images = f"{camera.width}x{camera.height} px" if camera else f"{'-'.join(map(str, args.image_size))} px"
    images += f", {args.preset} preset" if args.preset != "default" else ""
    images += f", vertical FOV {args.fov[0]:g}-{args.fov[1]:g} deg" if args.fov else ""
    images += f", aspect {args.aspect[0]:g}-{args.aspect[1]:g}" if args.aspect else ""
    images += f", principal point within {args.principal_jitter:g} of a side" if args.principal_jitter else ""
    images += f", {args.objects[0]}-{args.objects[1]} cubes each" if args.objects else ""
    images += f" ({args.empty_fraction:g} of them none)" if args.empty_fraction else ""
    scene = f" of a {'x'.join(f'{v:g}' for v in args.object_dimensions)} m object" if args.object_dimensions else ""
    lines = [
        f"{args.rotation} rotation; {args.train_count} train / {args.test_count} test images at {images}{scene}; "
        f"{length} per row on {torch.get_num_threads()} threads",
        "",
        "| recipe | steps | train img/s | translation_mse (m²) | orientation_error (rad) | translation cm (mean) "
        "| rotation deg (mean) | 5 cm 5 deg | AR MSSD / MSPD | cm p99 / max | withheld | training images: cm / deg |"
        + (" recall / precision 5 cm 5 deg | AP 5 cm 5 deg | predict img/s |" if args.objects else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if args.objects else ""),
    ]
    for name, config in configs.items():
        config["data"]["train"]["root"], config["data"]["test"]["root"] = str(data["train"]), str(data["test"])
        config["image_cache"] = True
        logger.info("%s", name)
        train_set, test_set = TrainDataset(config), TestDataset(config)
        network, steps, rate = train_for(config, train_set, budget_s, args.steps)
        predictor = PosePredictor(network, config, config["device"])
        if args.save_dir:  # for a closer look at the worst cases: cubepose predict, PosePredictor.load
            Path(args.save_dir).mkdir(parents=True, exist_ok=True)
            predictor.save(Path(args.save_dir) / f"row-{len(lines) - 4}.ckpt")
        seen = evaluate(predictor, train_set, limit=args.test_count)  # overfitting check
        logger.info(
            "on %d training images: %.2f cm, %.1f deg",
            args.test_count,
            seen["translation_error_cm_mean"],
            seen["rotation_error_deg_mean"],
        )
        lines.append(table_row(name, steps, f"{rate:.0f}", evaluate(predictor, test_set), seen))
        logger.info("%s", lines[-1])
        for split in (s for s in data if s.startswith("test@")):
            config["data"]["test"]["root"] = str(data[split])
            other = evaluate(predictor, TestDataset(config))
            lines.append(table_row(f"{name}, {tested_with(split)}", steps, f"{rate:.0f}", other))
            logger.info("%s", lines[-1])
        config["data"]["test"]["root"] = str(data["test"])
        if args.edflow:
            with tempfile.TemporaryDirectory() as work:
                checkpoint, seconds = train_through_edflow(recipes[name], steps, data, Path(work))
                through_edflow = PosePredictor.load(checkpoint, config["device"])
                rate = f"{steps * config['batch_size'] / seconds:.0f} (wall)"  # start-up and evaluations included
                tested, seen = evaluate(through_edflow, test_set), evaluate(through_edflow, train_set, args.test_count)
                lines.append(table_row(f"{name} through `edflow -t`", steps, rate, tested, seen))
            logger.info("%s", lines[-1])
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
