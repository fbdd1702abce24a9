"""`cubepose pytorchjob`: the Kubeflow PyTorchJob manifest, its pods checked by the Kubernetes client's models, and
its Master and Worker command lines run on loopback with the environment the Training Operator gives them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from gcs_fixtures import free_port
from kubernetes.client import ApiClient

from conftest import BIN, REPO

IMAGE = "europe-docker.pkg.dev/proj/cubepose/cubepose:gpu"


def write_manifest(tmp_path: Path, *flags: str) -> dict:
    out = tmp_path / "job.yaml"
    result = subprocess.run(
        [str(BIN / "cubepose"), "pytorchjob", *flags, "-o", str(out)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(out.read_text())


def as_kubernetes_model(template: dict) -> dict:
    """``template`` read into the Kubernetes client's V1PodTemplateSpec and written back: a misspelt or misplaced
    field, or a value of the wrong type, does not come back as it was."""

    class Response:
        data = json.dumps(template)

    client = ApiClient()
    return client.sanitize_for_serialization(client.deserialize(Response(), "V1PodTemplateSpec"))


def test_the_manifest_has_a_master_and_workers_whose_pods_the_kubernetes_models_accept(tmp_path):
    flags = ["--image", IMAGE, "--data-root", "gs://b/cube/data/", "--run-root", "gs://b/cube/runs"]
    manifest = write_manifest(tmp_path, *flags, "--nodes", "3", "--gpus-per-node", "4", "--overrides", "--num_epochs 9")
    assert (manifest["apiVersion"], manifest["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    spec = manifest["spec"]
    assert spec["nprocPerNode"] == "4"  # the operator turns it into PET_NPROC_PER_NODE for torchrun
    replicas = spec["pytorchReplicaSpecs"]
    assert {name: r["replicas"] for name, r in replicas.items()} == {"Master": 1, "Worker": 2}
    for replica in replicas.values():
        assert replica["restartPolicy"] == "Never"
        template = replica["template"]
        assert as_kubernetes_model(template) == template
        (container,) = template["spec"]["containers"]
        assert container["name"] == "pytorch" and container["image"] == IMAGE
        assert container["resources"] == {"limits": {"nvidia.com/gpu": "4"}}
        arguments = container["command"][4:]
        assert arguments[:6] == ["-n", "cubepose-train", "-b", "configs/base.yaml", "configs/gpu.yaml", "-t"]
        assert arguments[-2:] == ["--num_epochs", "9"] and "gs://b/cube/data/train/" in arguments
    misspelt = json.loads(json.dumps(replicas["Master"]["template"]))
    misspelt["spec"]["containers"][0]["comand"] = misspelt["spec"]["containers"][0].pop("command")
    assert as_kubernetes_model(misspelt) != misspelt  # the check sees a field the API does not know


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--image", "a b"], "--image must name a container image"), (["--nodes", "0"], "--nodes must be 1 or more")],
)
def test_impossible_job_options_are_refused(tmp_path, flags, named):
    command = [str(BIN / "cubepose"), "pytorchjob", "--image", "x", "--data-root", "d", "--run-root", "r", *flags]
    result = subprocess.run([*command, "-o", str(tmp_path / "job.yaml")], capture_output=True, text=True)
    assert result.returncode == 2 and named in result.stderr and not (tmp_path / "job.yaml").exists()


def test_the_master_and_worker_commands_train_one_run_on_loopback_and_the_master_publishes_it(tiny_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "validation"):
        (data / split).symlink_to(tiny_data[split], target_is_directory=True)
    runs = tmp_path / "runs"
    overrides = "--network/image_size 32 --batch_size 4 --num_steps 4 --n_data_processes 1 --device cpu"
    flags = ["--image", IMAGE, "--data-root", str(data), "--run-root", str(runs), "--gpus-per-node", "0"]
    manifest = write_manifest(
        tmp_path, *flags, "--configs", "configs/base.yaml configs/cpu.yaml", "--overrides", overrides
    )
    port = free_port()
    pods = []
    for node, role in enumerate(("Master", "Worker")):  # what the operator sets in each pod, on one machine here
        (container,) = manifest["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["containers"]
        work = tmp_path / role.lower()
        work.mkdir()
        (work / "configs").symlink_to(REPO / "configs")  # the image's working folder holds configs/
        env = {**os.environ, **{v["name"]: v["value"] for v in container["env"]}}
        env |= {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PET_NNODES": "2", "PET_NODE_RANK": str(node)}
        env |= {"PET_NPROC_PER_NODE": manifest["spec"]["nprocPerNode"], "PET_MASTER_ADDR": "127.0.0.1"}
        env |= {"PET_MASTER_PORT": str(port)}
        log = open(tmp_path / f"{role}.log", "w")
        pods.append((subprocess.Popen(container["command"], cwd=work, env=env, stdout=log, stderr=log), log))
    try:
        codes = [pod.wait(timeout=300) for pod, _ in pods]
    finally:
        for pod, log in pods:
            if pod.poll() is None:
                pod.kill()
            log.close()
    assert codes == [0, 0], [(tmp_path / f"{role}.log").read_text()[-2000:] for role in ("Master", "Worker")]
    (run,) = runs.iterdir()  # the Master published the one run folder; the Worker published nothing
    assert run.name.endswith("_cubepose-train") and (run / "model-4.ckpt").exists()
    assert not list((tmp_path / "worker" / "logs").iterdir())  # the Worker's rank wrote no run of its own
