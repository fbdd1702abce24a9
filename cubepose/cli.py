"""The ``cubepose`` command: generate and inspect data, read evaluations, predict and export."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from cubepose.errors import CubeposeError

logger = logging.getLogger("cubepose")
CAMERA_FILES = (
    "a ROS camera_info YAML, an OpenCV calibration (with their distortion), or JSON/YAML {fx, fy, cx, cy} in pixels "
    "of the images (optionally width, height, distortion)"
)


def _generate(args: argparse.Namespace) -> None:
    """Build the options from the flags and render; every impossible value is refused before anything is written."""
    from cubepose.synth import generate as gen

    if args.symmetric:
        raise ValueError("--symmetric is now --faces plain (the plain grey cube); use that")
    fov = gen.range_option("--fov", args.fov)
    aspect = gen.range_option("--aspect", args.aspect)
    image_size = gen.range_option("--image-size", args.image_size)
    if image_size is not None and image_size[0] == image_size[1]:
        image_size = image_size[0]
    given = gen.camera_option(args.camera) if args.camera else None
    if args.camera_from:
        given = gen.camera_from_export(args.camera_from)
    if args.distortion:
        given = gen.with_distortion(given, args.distortion)
    randomised = aspect is not None or args.principal_jitter is not None
    camera, image_size = gen.chosen_camera(args.preset, given, image_size, fov, randomised)
    scene = gen.scene_options(
        args.preset,
        distance=gen.distance_range(args.preset, args.min_distance, args.max_distance),
        vertical_fov_deg=fov,
        aspect=aspect,
        principal_jitter=args.principal_jitter,
        rotation=args.rotation,
        faces=gen.faces_option(args.faces),
        distractors=(0, args.max_distractors) if args.max_distractors is not None else None,
        objects=tuple(args.objects) if args.objects else None,
        empty_fraction=args.empty_fraction,
        dimensions=tuple(args.object_dimensions) if args.object_dimensions else None,
        camera=camera,
        style=args.style,
    )
    options = gen.GenerationOptions(
        count=args.count,
        seed=args.seed,
        image_size=image_size,
        format=args.format,
        **({"bop_split": args.bop_split} if args.bop_split else {}),
        scene=scene,
        backgrounds=args.backgrounds,
        workers=args.workers,
        shard=args.shard,
        shards=args.shards,
        sequence=_sequence_options(args),
    )
    gen.generate_dataset(args.out, options)


def _inspect(args: argparse.Namespace) -> None:
    from cubepose.config import defaults
    from cubepose.data.datasets import read_root
    from cubepose.data.summary import format_summary, summarize
    from cubepose.inference.camera_input import given_camera, read_camera_file

    if args.max_instances < 1:
        raise ValueError(f"--max-instances must be 1 or more, got {args.max_instances}")
    camera = defaults()["data"]["camera"]
    if args.fov is not None:
        if not 0 < args.fov < 180:  # NaN fails too
            raise ValueError(f"--fov must be a vertical field of view between 0 and 180 degrees, got {args.fov:g}")
        camera["vertical_fov"] = args.fov
    if args.intrinsics or args.camera:
        # refuses a camera no image can have, naming the values
        checked = read_camera_file(args.camera) if args.camera else given_camera(args.intrinsics)
        camera.update(fx=checked.fx, fy=checked.fy, cx=checked.cx, cy=checked.cy)
        if checked.distortion is not None:
            logger.warning("%s: data/camera holds no lens, so its distortion is not applied here", args.camera)
    data = {
        "format": args.format,
        "label_name": args.label_name,
        "instance_id": args.instance_id,
        "obj_id": args.obj_id,
        "max_instances": args.max_instances,
        "camera": camera,
        "cache_dir": args.cache_dir,
    }
    summary = summarize(read_root(data, args.root))
    sys.stdout.write((json.dumps(summary) if args.json else format_summary(summary)) + "\n")


def _metrics(args: argparse.Namespace) -> None:
    from cubepose.evaluation.evaluator import latest_metrics_file
    from cubepose.evaluation.summary import headline

    path = latest_metrics_file(Path(args.path))
    try:
        metrics = json.loads(path.read_bytes())
    except (ValueError, OSError) as err:  # truncated or not UTF-8: a killed or edited evaluation
        raise CubeposeError(f"cannot read {path} ({err}); evaluate again, or `cubepose report` its folder") from None
    if not isinstance(metrics, dict) or not metrics:
        raise CubeposeError(f"{path} is not a metrics file (a JSON object of metric names); evaluate again")
    width = max(len(k) for k in metrics)
    lines = [f"metrics of {path}"]
    if "translation_error_cm_mean" in metrics:  # cubepose's own metrics: the headline first, as the report says it
        lines.append(f"  {headline(metrics)}")
    lines += [f"  {k:<{width}}  {_shown(v)}" for k, v in sorted(metrics.items())]
    report = path.parent / "report.html"
    if report.exists():
        lines.append(f"report: {report}")
    sys.stdout.write("\n".join(lines) + "\n")


def _shown(value: object) -> str:
    """A metric's value for ``cubepose metrics``: numbers to 6 digits, null as n/a, anything else as its JSON."""
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.6g}"
    return json.dumps(value)[:80]


def _report(args: argparse.Namespace) -> None:
    from cubepose.engine.outputs import report_from_folder

    sys.stdout.write(f"{report_from_folder(args.folder)}\n")


def _publish(args: argparse.Namespace) -> None:
    from cubepose.cluster.publish import publish_run, write_kfp_metrics
    from cubepose.evaluation.evaluator import latest_metrics_file

    if bool(args.kfp_metrics) != bool(args.kfp_executor_input):
        raise ValueError("--kfp-metrics and --kfp-executor-input go together (the artifact path and {{$}})")
    logs = Path(args.logs)
    published = publish_run(logs, args.to)
    if args.checkpoint_url_file:
        if published.checkpoint_url is None:
            raise CubeposeError(f"{published.run} has no checkpoint to name; did training save one?")
        Path(args.checkpoint_url_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.checkpoint_url_file).write_text(published.checkpoint_url)
    if args.kfp_metrics:
        metrics = json.loads(latest_metrics_file(published.run).read_text())
        write_kfp_metrics(metrics, args.kfp_metrics, args.kfp_executor_input)
    sys.stdout.write(f"{published.url}\n")


def _pipeline(args: argparse.Namespace) -> None:
    from cubepose.cluster.pipeline import PipelineOptions, compile_pipeline

    options = PipelineOptions(
        image=args.image,
        cpu_image=args.cpu_image,
        shards=args.shards,
        generate=not args.no_generate,
        gpus=args.gpus,
    )
    sys.stdout.write(f"{compile_pipeline(options, args.out)}\n")


def _pytorchjob(args: argparse.Namespace) -> None:
    import yaml

    from cubepose.cluster.pytorchjob import JobOptions, pytorchjob
    from cubepose.io.atomic import atomic_write_text

    options = JobOptions(
        image=args.image,
        data_root=args.data_root,
        run_root=args.run_root,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        name=args.name,
        configs=args.configs,
        overrides=args.overrides,
    )
    manifest = pytorchjob(options)
    atomic_write_text(Path(args.out), yaml.safe_dump(manifest, sort_keys=False))
    sys.stdout.write(f"{args.out}\n")


def _load_predictor(args: argparse.Namespace):
    """The PosePredictor of ``--checkpoint`` on ``--device`` (checked before the checkpoint is read)."""
    from cubepose.inference.predictor import PosePredictor

    return PosePredictor.load(
        args.checkpoint, args.device, sha256=args.sha256, cache_dir=args.cache_dir, batch_size=args.batch_size
    )


def _sequence_options(args: argparse.Namespace):
    """``--sequence MOTION`` and its clock and speeds (their defaults where left out); None without it."""
    from cubepose.synth.sequence import SequenceOptions

    given = {"fps": args.fps, "speed": args.speed, "turn": args.turn}
    if args.sequence is None:
        if any(value is not None for value in given.values()):
            raise ValueError("--fps, --speed and --turn set a sequence's motion: give --sequence MOTION too")
        return None
    return SequenceOptions(args.sequence, **{key: value for key, value in given.items() if value is not None})


def _predict(args: argparse.Namespace) -> None:
    """Print one JSON line per image, in order, as each batch finishes.

    An image without a pose (unreadable, another camera than the training one, or a non-finite model
    output) gets an ``{"image", "error"}`` line and an error log, and the rest go on; if any failed, a
    summary error at the end makes the exit status non-zero, so a script never mistakes a partial run
    for a complete one.
    """
    from cubepose.inference.predictor import as_json_record

    stream = args.video is not None or args.camera_device is not None
    if stream == bool(args.images):
        raise CubeposeError("give image files, or one of --video FILE and --camera-device N, not both")
    if not stream and (args.overlay or args.track or args.smooth is not None):
        raise CubeposeError("--overlay, --track and --smooth work on a stream: give --video FILE or --camera-device N")
    if args.smooth is not None and not args.track:
        raise CubeposeError("--smooth smooths tracks: give --track too")
    camera = _predict_camera(args)  # a bad camera file is refused before the checkpoint is read
    if stream:
        _predict_stream(args, camera)
        return
    predictor = _load_predictor(args)
    done = failed = 0
    for poses in predictor.predict_items(args.images, keep_going=True, camera=camera):
        for index in range(len(poses["valid"])):
            record = as_json_record(args.images[done], poses, index)
            if "error" in record:
                failed += 1
                name, error = record["image"], record["error"]
                logger.error("%s", error if name in error else f"{name}: {error}")
            sys.stdout.write(json.dumps(record, allow_nan=False) + "\n")
            done += 1
        sys.stdout.flush()
    if failed:
        raise CubeposeError(
            f"{failed} of {done} images failed (see their error lines); the other poses are valid. "
            "Give readable PNG or JPEG files, the images' true camera (or a model trained for it); for non-finite "
            "outputs use another checkpoint"
        )


def _predict_stream(args: argparse.Namespace, camera) -> None:
    """Print one JSON line per frame of ``--video`` or ``--camera-device`` (cubepose.serving.video)."""
    from cubepose.io.video import VideoSource
    from cubepose.serving.smoothing import SmoothingSettings
    from cubepose.serving.tracking import TrackerSettings
    from cubepose.serving.video import StreamSettings, predict_stream

    if args.smooth is not None and len(args.smooth) not in (0, 4):
        raise CubeposeError(f"--smooth takes no numbers or four (MIN_CUTOFF BETA_T BETA_R D_CUTOFF), got {args.smooth}")
    smoothing = None if args.smooth is None else SmoothingSettings(*args.smooth)
    every = {} if args.search_every is None else {"search_every": args.search_every}
    tracking = TrackerSettings(**every, smoothing=smoothing) if args.track else None
    source = (
        VideoSource.from_file(args.video) if args.video is not None else VideoSource.from_device(args.camera_device)
    )
    failed = 0
    with source:
        predictor = _load_predictor(args)
        if tracking is not None:
            predictor.check_follows()
        try:
            for record in predict_stream(predictor, source, camera, StreamSettings(args.overlay, tracking)):
                if "error" in record:
                    failed += 1
                    logger.error("frame %d: %s", record["frame"], record["error"])
                sys.stdout.write(json.dumps(record, allow_nan=False) + "\n")
                sys.stdout.flush()
        except KeyboardInterrupt:  # how a live stream ends; the overlay so far is kept
            logger.info("stopped after %d frames", source.read)
    problems = [f"{failed} of {source.read} frames have no pose (see their error lines)"] if failed else []
    if source.missing:
        problems.append(f"{source.name} ended after {source.read} of {source.announced} frames (truncated or damaged)")
    if problems:
        raise CubeposeError("; ".join(problems) + "; the lines printed are valid")


def _predict_camera(args: argparse.Namespace):
    """The images' camera from ``--camera FILE`` or ``--intrinsics``; None when neither is given (not checked)."""
    from cubepose.inference.camera_input import given_camera, read_camera_file

    if args.camera:
        return read_camera_file(args.camera)
    return given_camera(args.intrinsics) if args.intrinsics else None


def _serve(args: argparse.Namespace) -> None:
    """Serve the checkpoint over HTTP until interrupted (cubepose.serving.http); flags left out take its defaults."""
    from cubepose.serving.http import serve

    options = ("host", "port", "device", "max_batch", "max_wait_ms", "sha256", "cache_dir", "camera")
    limits = ("max_request_mb", "max_image_pixels")
    given = {name: getattr(args, name) for name in (*options, *limits) if getattr(args, name) is not None}
    serve(args.checkpoint, **given)


def _export(args: argparse.Namespace) -> None:
    """Write the checkpoint's model as TorchScript or ONNX and print the file's path."""
    from cubepose.inference.export import export_model

    sys.stdout.write(f"{export_model(_load_predictor(args), args.out, args.format)}\n")


def _checkpoint_arguments(parser: argparse.ArgumentParser, batch_size: bool = True) -> None:
    """The model a command loads: --checkpoint, its --sha256 pin, --device, --cache-dir and (unless the command
    batches by itself, as serve does) --batch-size."""
    parser.add_argument("--checkpoint", required=True, help="model-<step>.ckpt: a path, gs://, s3:// or http(s):// URL")
    parser.add_argument("--sha256", help="expected SHA-256 of the checkpoint file, checked before loading")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1 or auto")
    if batch_size:
        parser.add_argument("--batch-size", type=int, help="images per forward pass (default: the config's)")
    parser.add_argument("--cache-dir", help="download folder for remote checkpoints")


def _intrinsics_argument(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup, meaning: str) -> None:
    """``--intrinsics FX FY CX CY``: a camera as four numbers in pixels."""
    parser.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"), help=meaning)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cubepose", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="render a synthetic cube dataset in a Unity Perception or BOP layout")
    gen.add_argument("out", help="output folder, gs:// or s3://bucket/prefix (the dataset root for data/<split>/root)")
    gen.add_argument("--count", type=int, required=True, help="number of images")
    gen.add_argument("--seed", type=int, default=0, help="same seed and options -> same dataset")
    gen.add_argument(
        "--format", choices=["legacy", "solo", "bop"], default="legacy", help="layout: Unity Perception's or BOP's"
    )
    gen.add_argument("--bop-split", help="BOP: the split folder beside models/ (default: train)")
    gen.add_argument(
        "--image-size",
        type=int,
        nargs="+",
        metavar="PX",
        help="square image side in pixels, 16-4096, centred camera (default 128); a range LO HI draws each image's "
        "height (solo only)",
    )
    camera = gen.add_mutually_exclusive_group()
    camera.add_argument(
        "--camera",
        type=float,
        nargs=6,
        metavar=("W", "H", "FX", "FY", "CX", "CY"),
        help="your camera: image width and height, focal lengths and principal point, in pixels (any aspect, "
        "off-centre allowed; pixel centres at +0.5, so add 0.5 to OpenCV's cx, cy); replaces --image-size and --fov",
    )
    camera.add_argument(
        "--camera-from",
        metavar="ROOT|FILE",
        help="the camera of an existing export (SOLO, or one made by cubepose generate; a legacy Unity export "
        "records none cubepose trusts: pass --camera), or a camera file (ROS camera_info YAML, OpenCV calibration) "
        "with its image size, whose lens distortion the images are rendered with",
    )
    gen.add_argument(
        "--sequence",
        metavar="MOTION",
        help="frames of one scene in motion, labelled each, and OUT/sequence.mp4 of them: static (only the sensor "
        "noise changes), moving (objects slide and turn on the table) or crossing (two objects swap places, one "
        "behind the other; --objects 2 2)",
    )
    gen.add_argument("--fps", type=float, help="--sequence: frames per second of its clock (default 30)")
    gen.add_argument("--speed", type=float, help="--sequence moving: peak speed along the table, m/s (default 0.1)")
    gen.add_argument("--turn", type=float, help="--sequence moving: turn about the table's normal, deg/s (default 30)")
    gen.add_argument(
        "--distortion",
        type=float,
        nargs="+",
        metavar="K",
        help="render through a lens with OpenCV's distortion k1 k2 p1 p2 [k3 [k4 k5 k6]] (e.g. -0.3 0.1 0 0); "
        "needs --camera or --camera-from, and replaces the distortion of a camera file",
    )
    gen.add_argument(
        "--preset",
        default="default",
        help="scene ranges and camera: default (cube fills a useful share; 128 px square, 60 deg), ur3 (Unity's UR3 "
        "tutorial cell: camera 1.74 m up and 1.91 m behind the arm's base, pitched 15 deg; the cube 0.2-0.4 m from "
        "the base on the table; 650x400 px, 60 deg) or ur3-free (the cube anywhere in view 1.7-2.5 m away); "
        "--camera, --image-size, --fov, --aspect or --principal-jitter replace the preset's camera",
    )
    gen.add_argument("--rotation", choices=["yaw", "full"], help="yaw: about the table's normal (default); full: any")
    gen.add_argument(
        "--fov",
        type=float,
        nargs="+",
        metavar="DEG",
        help="vertical field of view in (0, 180) degrees, or a range LO HI (solo only)",
    )
    gen.add_argument(
        "--aspect",
        type=float,
        nargs="+",
        metavar="W/H",
        help="image width / height, 0.25-4, or a range LO HI drawn per image (solo only); the height is --image-size",
    )
    gen.add_argument(
        "--principal-jitter",
        type=float,
        metavar="SHARE",
        help="move each image's principal point off centre by up to this share of the width and height, 0-0.25 "
        "(solo only)",
    )
    gen.add_argument(
        "--min-distance", type=float, help="nearest cube distance in metres, 0.15-50 (preset's by default)"
    )
    gen.add_argument("--max-distance", type=float, help="farthest cube distance in metres, 0.15-50")
    gen.add_argument("--max-distractors", type=int, help="at most this many boxes besides the cube (0-100)")
    gen.add_argument(
        "--objects",
        type=int,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="instances of the object per image, 1-32, never overlapping (default 1 1); train with "
        "data/max_instances MAX",
    )
    gen.add_argument("--empty-fraction", type=float, help="share of images with no instance of the object, 0-1")
    gen.add_argument("--backgrounds", help="an existing folder of .png/.jpg images used as backgrounds")
    gen.add_argument(
        "--faces",
        nargs="+",
        metavar="FACES",
        help="the object's faces: die (default: hues and pips, orientation unambiguous), plain (grey, for "
        "object/symmetries: cube), six image files of your object's faces in the order +x -x +y -y +z -z, "
        "each as seen from outside, or one image of its unfolded net (a 4:3 cross: +x +z -x -z across the middle, "
        "+y above +z, -y below it)",
    )
    gen.add_argument(
        "--style",
        help="the look: randomised (default; what training renders), or a held-apart test look: structured (a "
        "table on legs, floor, sky, an arm, shadows), photos (real photographs behind and under the object), "
        "camera (blur, exposure, white balance, vignetting, noise, JPEG), letters (the die's colours with letters)",
    )
    gen.add_argument("--symmetric", action="store_true", help=argparse.SUPPRESS)  # replaced by --faces plain
    gen.add_argument(
        "--object-dimensions",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="edge lengths of the rendered box in metres (default: the config's object/dimensions default); "
        "train with the same object/dimensions",
    )
    gen.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="render processes, 1 or more (default: all cores)"
    )
    gen.add_argument("--shards", type=int, default=1, help="split the images into N shards, one per machine")
    gen.add_argument(
        "--shard", type=int, default=0, help="render only shard K (0..N-1) into <out>/shard-K-of-N/; same seed for all"
    )
    gen.set_defaults(run=_generate)

    ins = commands.add_parser("inspect", help="check a Perception or BOP dataset before training on it")
    ins.add_argument("root", help="dataset folder, .zip, or gs:// or s3://bucket/file.zip or bucket/prefix/")
    ins.add_argument("--label-name", help="label of the cube's 3D box (data/label_name)")
    ins.add_argument("--instance-id", type=int, help="instance to pick when a capture has several (data/instance_id)")
    ins.add_argument(
        "--max-instances", type=int, default=1, help="keep up to N instances per capture (data/max_instances)"
    )
    ins.add_argument("--obj-id", type=int, help="BOP: the object's obj_id (data/obj_id)")
    ins.add_argument("--format", choices=["auto", "legacy", "solo", "bop"], default="auto", help="layout (data/format)")
    ins.add_argument(
        "--fov",
        type=float,
        help="legacy camera's vertical field of view in degrees (default 60), for captures that record no camera",
    )
    legacy_camera = ins.add_mutually_exclusive_group()
    _intrinsics_argument(legacy_camera, "legacy camera in pixels, for captures that record no camera")
    legacy_camera.add_argument("--camera", metavar="FILE", help=f"the same camera from a file: {CAMERA_FILES}")
    ins.add_argument("--cache-dir", help="download folder for gs:// and s3:// data (data/cache_dir)")
    ins.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ins.set_defaults(run=_inspect)

    met = commands.add_parser(
        "metrics", help="print the newest metrics.json of a run or eval folder and its report's path"
    )
    met.add_argument("path", help="logs/<run>, one of its eval folders, or a metrics.json")
    met.set_defaults(run=_metrics)

    rep = commands.add_parser("report", help="write report.html of an evaluation from its saved outputs")
    rep.add_argument("folder", help="an eval folder: logs/<run>/eval/<timestamp>/<step>/")
    rep.set_defaults(run=_report)
    pub = commands.add_parser("publish", help="upload the newest edflow run folder (cluster steps: KFP outputs too)")
    pub.add_argument("logs", help="edflow's logs folder; its newest run is published")
    pub.add_argument(
        "--to", required=True, help="gs:// or s3://bucket/prefix or a folder: the run goes to <to>/<run name>/"
    )
    pub.add_argument("--checkpoint-url-file", help="write the URL of the run's newest checkpoint into this file")
    pub.add_argument("--kfp-metrics", metavar="PATH", help="write the newest metrics.json as a KFP Metrics artifact")
    pub.add_argument(
        "--kfp-executor-input", metavar="JSON", help="the task's executor input ({{$}}), with --kfp-metrics"
    )
    pub.set_defaults(run=_publish)

    pip = commands.add_parser("pipeline", help="compile the Kubeflow pipeline (generate -> train -> evaluate) to YAML")
    pip.add_argument("--image", required=True, help="image of the train step (and the others unless overridden)")
    pip.add_argument("--cpu-image", help="image of the generate and evaluate steps (e.g. the CPU image)")
    pip.add_argument("--shards", type=int, default=4, help="parallel generate steps for the train split (default 4)")
    pip.add_argument("--no-generate", action="store_true", help="no generate steps: the data is already in data_root")
    pip.add_argument("--gpus", type=int, default=1, help="GPUs of the train pod (default 1; 0: none; N>1: N ranks)")
    pip.add_argument("-o", "--out", default="cubepose-pipeline.yaml", help="spec file to write")
    pip.set_defaults(run=_pipeline)

    job = commands.add_parser("pytorchjob", help="write a Kubeflow PyTorchJob that trains on several nodes")
    job.add_argument("--image", required=True, help="the GPU image every pod runs")
    job.add_argument("--data-root", required=True, help="gs://... holding train/ and validation/")
    job.add_argument("--run-root", required=True, help="gs://... where checkpoints and the run folder go")
    job.add_argument("--nodes", type=int, default=2, help="pods: one Master and N - 1 Workers (default 2)")
    job.add_argument("--gpus-per-node", type=int, default=1, help="GPUs of each pod, one torchrun rank each")
    job.add_argument("--name", default="cubepose-train", help="the job's and the run's name")
    job.add_argument("--configs", default="configs/base.yaml configs/gpu.yaml", help="edflow's -b overlays")
    job.add_argument("--overrides", default="", help="edflow --key value overrides, in one quoted string")
    job.add_argument("-o", "--out", default="cubepose-pytorchjob.yaml", help="manifest file to write")
    job.set_defaults(run=_pytorchjob)

    pre = commands.add_parser("predict", help="print the pose of each image as one JSON object per line")
    _checkpoint_arguments(pre)
    pre.add_argument("images", nargs="*", help="PNG or JPEG files of any size")
    stream = pre.add_mutually_exclusive_group()
    stream.add_argument("--video", metavar="FILE", help="a video file (MP4, AVI, MKV): one JSON line per frame")
    stream.add_argument(
        "--camera-device", type=int, metavar="N", help="camera device N (/dev/videoN), until Ctrl-C (--device: torch's)"
    )
    pre.add_argument(
        "--overlay", metavar="OUT", help="write the frames with each box and its axes drawn (.mp4, .avi, .mkv)"
    )
    pre.add_argument(
        "--track",
        action="store_true",
        help="follow each object from its last pose (a zoom-in model's second stage), search the whole image "
        "only when one is lost; poses carry track ids",
    )
    pre.add_argument(
        "--search-every",
        type=int,
        default=30,
        metavar="N",
        help="--track: search the whole image every N frames for new objects (default 30)",
    )
    pre.add_argument(
        "--smooth",
        type=float,
        nargs="*",
        metavar="X",
        help="--track: One-Euro filter of the poses; optionally its MIN_CUTOFF (Hz) BETA_T (Hz per m/s) BETA_R (Hz "
        "per rad/s) D_CUTOFF (Hz), default 1 10 5 1",
    )
    seen_by = pre.add_mutually_exclusive_group()
    seen_by.add_argument(
        "--camera",
        metavar="FILE",
        help=f"the camera that took the images: {CAMERA_FILES}; a regression model refuses an image whose camera is "
        "not its training camera (an error line)",
    )
    _intrinsics_argument(seen_by, "the same camera as four numbers in pixels of the images")
    pre.set_defaults(run=_predict)

    exp = commands.add_parser("export", help="write the model as TorchScript or ONNX for deployment")
    _checkpoint_arguments(exp)
    exp.add_argument("--format", choices=["torchscript", "onnx"], required=True, help="TorchScript (.pt) or ONNX")
    exp.add_argument("out", help="output file; a JSON note of inputs and outputs is written beside it")
    exp.set_defaults(run=_export)

    srv = commands.add_parser("serve", help="answer POST /predict over HTTP with one loaded model, batching requests")
    _checkpoint_arguments(srv, batch_size=False)
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    srv.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    srv.add_argument("--max-batch", type=int, help="images predicted together at most (default 4: half of 8 clients)")
    srv.add_argument("--max-wait-ms", type=float, help="how long a request waits for others to batch with (default 5)")
    srv.add_argument("--max-request-mb", type=float, help="largest request body in MiB (default: a 4096 x 4096 PPM)")
    srv.add_argument("--max-image-pixels", type=int, help="largest image, width x height (default: 4096 x 4096)")
    srv.add_argument("--camera", metavar="FILE", help=f"the images' camera when a request gives none: {CAMERA_FILES}")
    srv.set_defaults(run=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.run(args)
    except (CubeposeError, ValueError) as err:
        logger.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
