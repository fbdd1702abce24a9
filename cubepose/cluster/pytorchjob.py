"""A Kubeflow Training Operator ``PyTorchJob`` that trains on several nodes: one Master pod and N - 1 Worker pods,
each running torchrun over its GPUs around the same `edflow` command (cubepose.engine.ranked_edflow).

The operator gives every pod the rendezvous in the environment (``PET_NNODES``, ``PET_NPROC_PER_NODE`` from
``nprocPerNode``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR``, ``PET_MASTER_PORT``), which torchrun reads as its
options, so the container's command names none of them. Rank 0 (on the Master) writes the run; when training
ends the Master publishes the run folder to ``run_root`` as the pipeline's train step does. A pod that fails
fails the job (``restartPolicy: Never``): resume it with ``-p`` from the published run.
"""

from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass

from cubepose.cluster.pipeline import DEFAULT_CONFIGS

API_VERSION = "kubeflow.org/v1"
CONTAINER = "pytorch"  # the name the operator looks for in the replicas' pod templates

# sh -c: train, then the Master (node rank 0) publishes the run folder and its newest checkpoint
SCRIPT = """set -euf
torchrun -m cubepose.engine.ranked_edflow "$@"
if [ "${PET_NODE_RANK:-0}" = 0 ]; then cubepose publish logs --to "$CUBEPOSE_RUN_ROOT"; fi
"""


@dataclass(frozen=True)
class JobOptions:
    """What the job runs: the image, its nodes and GPUs, and the training command's data, run root and config."""

    image: str
    data_root: str
    run_root: str
    nodes: int = 2
    gpus_per_node: int = 1
    name: str = "cubepose-train"
    configs: str = DEFAULT_CONFIGS
    overrides: str = ""  # edflow's --key value, split like a shell command line
    gpu_type: str = "nvidia.com/gpu"

    def check(self) -> None:
        if not self.image or any(c.isspace() for c in self.image):
            raise ValueError(f"--image must name a container image (registry/name:tag), got {self.image!r}")
        if self.nodes < 1 or self.gpus_per_node < 0:
            raise ValueError(
                f"--nodes must be 1 or more and --gpus-per-node 0 or more, got {self.nodes}, {self.gpus_per_node}"
            )
        if not self.data_root or not self.run_root:
            raise ValueError("--data-root and --run-root must name where the data lies and where runs go (gs://...)")


def edflow_arguments(options: JobOptions) -> list[str]:
    """The `edflow` arguments every rank runs: train on data_root/{train,validation}, upload checkpoints."""
    data = options.data_root.rstrip("/")
    arguments = ["-n", options.name, "-b", *options.configs.split(), "-t"]
    arguments += ["--data/train/root", f"{data}/train/", "--data/validation/root", f"{data}/validation/"]
    return arguments + ["--checkpoint/upload", options.run_root, *shlex.split(options.overrides)]


def pytorchjob(options: JobOptions) -> dict:
    """The PyTorchJob manifest (a dict to write as YAML and ``kubectl apply``)."""
    options.check()
    container = {
        "name": CONTAINER,
        "image": options.image,
        "command": ["sh", "-c", SCRIPT, "train", *edflow_arguments(options)],
        "env": [{"name": "CUBEPOSE_RUN_ROOT", "value": options.run_root}],
    }
    if options.gpus_per_node:
        container["resources"] = {"limits": {options.gpu_type: str(options.gpus_per_node)}}  # a quantity

    def replicas(count: int) -> dict:
        pod = {"containers": [copy.deepcopy(container)]}  # one copy per replica type: no YAML anchors
        return {"replicas": count, "restartPolicy": "Never", "template": {"spec": pod}}

    specs = {"Master": replicas(1)}
    if options.nodes > 1:
        specs["Worker"] = replicas(options.nodes - 1)
    return {
        "apiVersion": API_VERSION,
        "kind": "PyTorchJob",
        "metadata": {"name": options.name},
        "spec": {"nprocPerNode": str(max(1, options.gpus_per_node)), "pytorchReplicaSpecs": specs},
    }
