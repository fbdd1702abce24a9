"""The Kubeflow Pipelines (v2) pipeline: generate (optional, fanned out) -> train -> evaluate.

Every step is a container component running the project image's own commands: ``cubepose
generate`` per shard, then ``edflow ... -t`` and ``edflow ... -c <checkpoint>`` each followed
by ``cubepose publish``, which puts the run folder in gs:// and hands KFP its outputs (the
checkpoint URL; the evaluation's metrics.json as a Metrics artifact). Data and runs live in
gs:// paths given as pipeline parameters; config overlays and ``--key value`` overrides are
parameters too, split on whitespace like a shell command line.

What the pipeline's shape depends on (image, shard count, GPUs, whether to generate) is fixed
when compiling (``cubepose pipeline``); everything else can be changed per run in the KFP UI.
"""

from dataclasses import dataclass
from pathlib import Path

from kfp import compiler, dsl

# No `from __future__ import annotations` here: kfp reads the components' annotations as objects.

PIPELINE_NAME = "cubepose"
DEFAULT_CONFIGS = "configs/base.yaml configs/gpu.yaml"
EVAL_OVERLAY = "configs/test.yaml"  # points edflow's evaluated split (and its unused train split) at data/test

# sh -c scripts: the positional parameters are the component's arguments. Overlays and overrides
# are split on whitespace with globbing off (set -f), so "[1,2]" stays a YAML list. Evaluation
# runs with --device auto: on the CPU image it must not insist on gpu.yaml's cuda.
TRAIN_SCRIPT = """set -euf
configs=$1 overrides=$2 data=${3%/} runs=${4%/} name=$5 checkpoint_file=$6
status=0
LAUNCH -n "$name" -b $configs -t \\
  --data/train/root "$data/train/" --data/validation/root "$data/validation/" \\
  --checkpoint/upload "$runs" $overrides || status=$?
if [ "$status" -ne 0 ]; then  # keep the failed run's log and configs in gs:// too, then fail the step
  cubepose publish logs --to "$runs" || true
  exit "$status"
fi
cubepose publish logs --to "$runs" --checkpoint-url-file "$checkpoint_file"
"""

EVALUATE_SCRIPT = """set -euf
configs=$1 overrides=$2 data=${3%/} runs=${4%/} name=$5 checkpoint=$6 metrics=$7 executor_input=$8
edflow -n "$name" -b $configs EVAL_OVERLAY -c "$checkpoint" --data/test/root "$data/test/" --device auto $overrides
cubepose publish logs --to "$runs" --kfp-metrics "$metrics" --kfp-executor-input "$executor_input"
""".replace("EVAL_OVERLAY", EVAL_OVERLAY)


def train_script(gpus: int) -> str:
    """The train step's script: `edflow` for one GPU (or none), else one rank per GPU of the pod under torchrun
    (cubepose.engine.ranked_edflow; rank 0 writes the one run folder that ``cubepose publish`` sends)."""
    launch = (
        "edflow" if gpus <= 1 else f"torchrun --standalone --nproc_per_node {gpus} -m cubepose.engine.ranked_edflow"
    )
    return TRAIN_SCRIPT.replace("LAUNCH", launch)


@dataclass(frozen=True)
class PipelineOptions:
    """What compiling fixes: images, the fan-out of generation, the GPUs of training."""

    image: str
    cpu_image: str | None = None  # image of the generate and evaluate steps, which need no GPU (default: image)
    shards: int = 4  # parallel generate steps for the train split
    generate: bool = True  # False: the data already lies under data_root
    gpus: int = 1  # nvidia.com/gpu requested by the train step (0: none; above 1: one torchrun rank each)
    gpu_type: str = "nvidia.com/gpu"

    def check(self) -> None:
        if not self.image or any(c.isspace() for c in self.image):
            raise ValueError(f"--image must name a container image (registry/name:tag), got {self.image!r}")
        if self.shards < 1:
            raise ValueError(f"--shards must be at least 1, got {self.shards}")
        if self.gpus < 0:
            raise ValueError(f"--gpus must be 0 or more, got {self.gpus}")


def _components(options: PipelineOptions):
    """The three container components, bound to the compile-time images."""

    @dsl.container_component
    def generate(out: str, count: int, seed: int, shard: int, shards: int, image_size: int, rotation: str, fmt: str):
        """Render shard ``shard`` of ``shards`` of a synthetic dataset into ``out`` (gs://)."""
        return dsl.ContainerSpec(
            image=options.cpu_image or options.image,
            command=["cubepose", "generate"],
            args=[
                out,
                "--count",
                count,
                "--seed",
                seed,
                "--shard",
                shard,
                "--shards",
                shards,
                "--image-size",
                image_size,
                "--rotation",
                rotation,
                "--format",
                fmt,
            ],
        )

    @dsl.container_component
    def train(configs: str, overrides: str, data_root: str, run_root: str, name: str, checkpoint: dsl.OutputPath(str)):
        """Train with edflow on data_root/{train,validation}; checkpoints and the run folder go to run_root."""
        return dsl.ContainerSpec(
            image=options.image,
            command=["sh", "-c", train_script(options.gpus), "train"],
            args=[configs, overrides, data_root, run_root, name, checkpoint],
        )

    @dsl.container_component
    def evaluate(
        configs: str,
        overrides: str,
        data_root: str,
        run_root: str,
        name: str,
        checkpoint: str,
        metrics: dsl.Output[dsl.Metrics],
    ):
        """Evaluate a checkpoint with edflow on data_root/test; metrics.json becomes the run's KFP metrics."""
        return dsl.ContainerSpec(
            image=options.cpu_image or options.image,
            command=["sh", "-c", EVALUATE_SCRIPT, "evaluate"],
            args=[configs, overrides, data_root, run_root, name, checkpoint, metrics.path, "{{$}}"],
        )

    return generate, train, evaluate


def build_pipeline(options: PipelineOptions):
    """The pipeline function (a kfp GraphComponent) for ``options``."""
    options.check()
    generate, train, evaluate = _components(options)

    @dsl.pipeline(name=PIPELINE_NAME, description="cubepose: generate (optional) -> train -> evaluate with edflow")
    def cubepose_pipeline(
        data_root: str,
        run_root: str,
        name: str = "cubepose",
        configs: str = DEFAULT_CONFIGS,
        overrides: str = "",
        train_count: int = 30000,
        validation_count: int = 3000,
        test_count: int = 3000,
        train_seed: int = 1,
        validation_seed: int = 2,
        test_seed: int = 3,
        image_size: int = 128,
        rotation: str = "yaw",
        data_format: str = "legacy",
    ):
        generated = []
        if options.generate:
            scene = {"image_size": image_size, "rotation": rotation, "fmt": data_format}
            with dsl.ParallelFor(items=list(range(options.shards)), parallelism=options.shards) as shard:
                train_shard = generate(
                    out=f"{data_root}/train",
                    count=train_count,
                    seed=train_seed,
                    shard=shard,
                    shards=options.shards,
                    **scene,
                ).set_display_name("generate train shard")
            for split, count, seed in (
                ("validation", validation_count, validation_seed),
                ("test", test_count, test_seed),
            ):
                generated.append(
                    generate(out=f"{data_root}/{split}", count=count, seed=seed, shard=0, shards=1, **scene)
                    .set_display_name(f"generate {split}")
                    .set_retry(2)
                    .set_caching_options(False)
                )
            generated.append(train_shard.set_retry(2).set_caching_options(False))
        trained = train(configs=configs, overrides=overrides, data_root=data_root, run_root=run_root, name=name)
        trained.set_display_name("train").set_caching_options(False).after(*generated)
        if options.gpus:
            trained.set_accelerator_type(options.gpu_type).set_accelerator_limit(options.gpus)
        evaluate(
            configs=configs,
            overrides=overrides,
            data_root=data_root,
            run_root=run_root,
            name=f"{name}-eval",
            checkpoint=trained.outputs["checkpoint"],
        ).set_display_name("evaluate").set_caching_options(False)

    return cubepose_pipeline


def compile_pipeline(options: PipelineOptions, path: str | Path) -> Path:
    """Compile the pipeline for ``options`` to the YAML spec at ``path`` (what `kfp run create` submits)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(options), str(path))
    return path
