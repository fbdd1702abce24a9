"""The Kubeflow pipeline: its compiled spec (steps, images, arguments, GPU, fan-out) and its steps run for real.

No cluster runs here, so the second half does what the KFP launcher does with the compiled
spec: it fills each executor's placeholders and runs its command line (generate shards, edflow
training, edflow evaluation, cubepose publish) in a fresh folder per step, as pods would, with
gs:// served by the GCS emulator.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from conftest import BIN, REPO
from cubepose.cli import main
from cubepose.cluster.pipeline import DEFAULT_CONFIGS

IMAGE = "europe-docker.pkg.dev/proj/cubepose/cubepose:gpu"
CPU_IMAGE = "europe-docker.pkg.dev/proj/cubepose/cubepose:cpu"


def compile_spec(tmp_path: Path, *flags: str) -> dict:
    """Compile with the real `cubepose pipeline` command and load the YAML spec."""
    out = tmp_path / "pipeline.yaml"
    result = subprocess.run(
        [str(BIN / "cubepose"), "pipeline", *flags, "-o", str(out)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    return yaml.safe_load(out.read_text())


def executor(spec: dict, task: dict) -> dict:
    """The container of the executor that runs ``task``."""
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    return compile_spec(tmp_path_factory.mktemp("spec"), "--image", IMAGE, "--cpu-image", CPU_IMAGE, "--shards", "3")


def test_spec_fans_generation_out_then_trains_on_a_gpu_then_evaluates(spec):
    tasks = spec["root"]["dag"]["tasks"]
    by_name = {task["taskInfo"]["name"]: (key, task) for key, task in tasks.items()}
    loop_key, loop = next((k, t) for k, t in tasks.items() if "parameterIterator" in t)
    assert set(by_name) == {loop["taskInfo"]["name"], "generate validation", "generate test", "train", "evaluate"}

    # N parallel generate steps for the train split: one per shard, each told its shard and the total.
    assert json.loads(loop["parameterIterator"]["items"]["raw"]) == [0, 1, 2]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 3
    (shard_task,) = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"].values()
    inputs = shard_task["inputs"]["parameters"]
    item = loop["parameterIterator"]["itemInput"]
    assert inputs["shard"] == {"componentInputParameter": item}
    assert inputs["shards"] == {"runtimeValue": {"constant": 3}}
    assert inputs["seed"] == {"componentInputParameter": "pipelinechannel--train_seed"}
    assert inputs["out"]["runtimeValue"]["constant"].endswith("['pipelinechannel--data_root']}}/train")
    assert shard_task["retryPolicy"]["maxRetryCount"] == 2
    for split in ("validation", "test"):
        single = by_name[f"generate {split}"][1]["inputs"]["parameters"]
        assert single["shards"] == {"runtimeValue": {"constant": 1}}
        assert single["seed"] == {"componentInputParameter": f"{split}_seed"}

    train_key, train = by_name["train"]
    assert sorted(train["dependentTasks"]) == sorted(
        [loop_key, by_name["generate validation"][0], by_name["generate test"][0]]
    )
    _, evaluate = by_name["evaluate"]
    assert evaluate["dependentTasks"] == [train_key]
    assert evaluate["inputs"]["parameters"]["checkpoint"] == {
        "taskOutputParameter": {"outputParameterKey": "checkpoint", "producerTask": train_key}
    }
    assert "cachingOptions" in train and not train["cachingOptions"].get("enableCache")

    # Images: the GPU image trains; the CPU image generates and evaluates. Training asks for one GPU.
    train_container = executor(spec, train)
    assert train_container["image"] == IMAGE
    assert train_container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert train_container["resources"]["accelerator"]["resourceCount"] == "1"
    assert executor(spec, evaluate)["image"] == CPU_IMAGE
    assert executor(spec, shard_task)["image"] == CPU_IMAGE
    assert "resources" not in executor(spec, evaluate)


def test_spec_command_lines_are_edflow_and_cubepose_with_the_run_parameters(spec):
    tasks = {task["taskInfo"]["name"]: task for task in spec["root"]["dag"]["tasks"].values()}
    generate = executor(spec, tasks["generate test"])
    assert generate["command"] == ["cubepose", "generate"]
    flags = generate["args"][1::2]
    assert flags == ["--count", "--seed", "--shard", "--shards", "--image-size", "--rotation", "--format"]

    train = executor(spec, tasks["train"])
    assert train["command"][:2] == ["sh", "-c"]
    script = train["command"][2]
    assert 'edflow -n "$name" -b $configs -t' in script
    assert '--checkpoint/upload "$runs" $overrides' in script
    assert 'cubepose publish logs --to "$runs" --checkpoint-url-file "$checkpoint_file"' in script
    assert train["args"] == [
        "{{$.inputs.parameters['configs']}}",
        "{{$.inputs.parameters['overrides']}}",
        "{{$.inputs.parameters['data_root']}}",
        "{{$.inputs.parameters['run_root']}}",
        "{{$.inputs.parameters['name']}}",
        "{{$.outputs.parameters['checkpoint'].output_file}}",
    ]

    evaluate = executor(spec, tasks["evaluate"])
    assert 'edflow -n "$name" -b $configs configs/test.yaml -c "$checkpoint"' in evaluate["command"][2]
    assert "--device auto $overrides" in evaluate["command"][2]
    assert evaluate["args"][-2:] == ["{{$.outputs.artifacts['metrics'].path}}", "{{$}}"]
    metrics = spec["components"][tasks["evaluate"]["componentRef"]["name"]]["outputDefinitions"]["artifacts"]
    assert metrics["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"

    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert "defaultValue" not in parameters["data_root"] and "defaultValue" not in parameters["run_root"]
    assert parameters["configs"]["defaultValue"] == DEFAULT_CONFIGS
    assert parameters["overrides"]["defaultValue"] == ""
    assert parameters["train_count"]["defaultValue"] == 30000


def test_a_pod_of_several_gpus_trains_one_torchrun_rank_per_gpu(tmp_path):
    spec = compile_spec(tmp_path, "--image", IMAGE, "--gpus", "4")
    (train,) = [t for t in spec["root"]["dag"]["tasks"].values() if t["taskInfo"]["name"] == "train"]
    container = executor(spec, train)
    assert container["resources"]["accelerator"]["resourceCount"] == "4"
    launch = 'torchrun --standalone --nproc_per_node 4 -m cubepose.engine.ranked_edflow -n "$name" -b $configs -t'
    assert launch in container["command"][2]


def test_spec_without_generation_or_gpu(tmp_path):
    spec = compile_spec(tmp_path, "--image", CPU_IMAGE, "--no-generate", "--gpus", "0")
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(t["taskInfo"]["name"] for t in tasks.values()) == ["evaluate", "train"]
    assert "dependentTasks" not in tasks["train"]
    assert all("resources" not in e["container"] for e in spec["deploymentSpec"]["executors"].values())
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {CPU_IMAGE}


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--image", "a b"], "--image must name a container image"), (["--image", "x", "--shards", "0"], "--shards")],
)
def test_bad_compile_options_are_refused(tmp_path, flags, message):
    result = subprocess.run(
        [str(BIN / "cubepose"), "pipeline", *flags, "-o", str(tmp_path / "p.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "p.yaml").exists()


# -- the compiled steps, run as the launcher would ---------------------------------------------


def run_step(
    spec: dict, task: dict, values: dict, work: Path, env: dict, succeeds: bool = True
) -> subprocess.CompletedProcess:
    """Fill the executor's placeholders from ``values`` and run its command line in ``work`` (a fresh pod)."""
    container = executor(spec, task)

    def fill(text: str) -> str:
        text = re.sub(r"\{\{\$\.inputs\.parameters\['(\w+)'\]\}\}", lambda m: str(values[m.group(1)]), text)
        text = re.sub(r"\{\{\$\.outputs\.parameters\['(\w+)'\]\.output_file\}\}", lambda m: values[m.group(1)], text)
        text = re.sub(r"\{\{\$\.outputs\.artifacts\['(\w+)'\]\.path\}\}", lambda m: values[m.group(1)], text)
        return text.replace("{{$}}", values.get("executor_input", "{{$}}"))

    work.mkdir(parents=True)
    (work / "configs").symlink_to(REPO / "configs")  # the image's working folder holds configs/
    command = [fill(part) for part in container["command"] + container["args"]]
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    report = f"{shlex.join(command)[:2000]}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert (result.returncode == 0) == succeeds, report
    return result


def test_compiled_steps_generate_shards_train_and_evaluate_through_gcs(gcs_emulator, tmp_path):
    spec = compile_spec(tmp_path, "--image", IMAGE, "--shards", "3", "--gpus", "2")  # training: 2 ranks (gloo here)
    tasks = {task["taskInfo"]["name"]: task for task in spec["root"]["dag"]["tasks"].values()}
    loop = next(t for t in tasks.values() if "parameterIterator" in t)
    (shard_task,) = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"].values()
    bucket = gcs_emulator.bucket()
    data_root, run_root = f"gs://{bucket}/cube/data/", f"gs://{bucket}/cube/runs"  # a trailing slash is fine
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "CUBEPOSE_CACHE": str(tmp_path / "cache")}
    scene = {"image_size": 40, "rotation": "yaw", "fmt": "legacy"}

    for shard in range(3):  # the fan-out: three pods, one shard each
        values = {"out": data_root + "/train", "count": 24, "seed": 1, "shard": shard, "shards": 3, **scene}
        run_step(spec, shard_task, values, tmp_path / f"shard{shard}", env)
    for split, seed in (("validation", 2), ("test", 3)):
        values = {"out": f"{data_root}/{split}", "count": 8, "seed": seed, "shard": 0, "shards": 1, **scene}
        run_step(spec, tasks[f"generate {split}"], values, tmp_path / split, env)
    with gcs_emulator.client() as client:
        shard_folders = {b.name.split("/")[3] for b in client.list_blobs(bucket, prefix="cube/data/train/")}
    assert shard_folders == {f"shard-0000{k}-of-00003" for k in range(3)}

    overrides = (
        "--network/image_size 32 --batch_size 8 --num_steps 3 --n_data_processes 1 --log_freq 2 --test_batch_size 8"
    )
    run = {"configs": "configs/base.yaml configs/cpu.yaml", "overrides": overrides, "data_root": data_root}
    run |= {"run_root": run_root, "name": "kfp"}
    checkpoint_file = tmp_path / "outputs" / "checkpoint"
    trained = run_step(spec, tasks["train"], {**run, "checkpoint": str(checkpoint_file)}, tmp_path / "train", env)
    output = trained.stdout + trained.stderr  # the three shards, read as one dataset from gs://, halved by the ranks
    assert "data-parallel training on 2 ranks" in output and "each rank trains on its own 12 examples" in output

    checkpoint = checkpoint_file.read_text()
    assert re.fullmatch(rf"gs://{bucket}/cube/runs/[^/]+_kfp/model-3\.ckpt", checkpoint)
    run_prefix = checkpoint.removeprefix(f"gs://{bucket}/").rsplit("/", 1)[0]
    with gcs_emulator.client() as client:
        uploaded = {b.name.removeprefix(run_prefix + "/") for b in client.list_blobs(bucket, prefix=run_prefix + "/")}
        client.bucket(bucket).blob(checkpoint.removeprefix(f"gs://{bucket}/")).download_to_filename(tmp_path / "m.ckpt")
    assert {"model-3.ckpt", "train/log.txt"} <= uploaded
    assert not any(name.startswith("train/checkpoints/") for name in uploaded)  # checkpoints are not sent twice
    assert torch.load(tmp_path / "m.ckpt", weights_only=True)["global_step"] == 3

    executor_output = tmp_path / "kfp_outputs" / "output_metadata.json"
    metrics_uri = f"gs://{bucket}/pipeline-root/evaluate/metrics"
    executor_input = {
        "inputs": {"parameterValues": {"checkpoint": checkpoint}},
        "outputs": {
            "artifacts": {
                "metrics": {
                    "artifacts": [{"name": "metrics", "type": {"schemaTitle": "system.Metrics"}, "uri": metrics_uri}]
                }
            },
            "outputFile": str(executor_output),
        },
    }
    metrics_path = tmp_path / "artifacts" / "metrics"
    values = {**run, "name": "kfp-eval", "checkpoint": checkpoint, "metrics": str(metrics_path)}
    eval_env = env | {"CUBEPOSE_CACHE": str(tmp_path / "eval-cache")}  # a fresh pod: nothing cached
    run_step(
        spec, tasks["evaluate"], values | {"executor_input": json.dumps(executor_input)}, tmp_path / "eval", eval_env
    )
    downloaded = tmp_path / "eval-cache" / "gcs" / bucket / "cube" / "data"
    assert sorted(p.name for p in downloaded.iterdir()) == ["test"]  # evaluation never fetches the training data

    metrics = json.loads(metrics_path.read_text())
    assert metrics["instances"] == 8 and {"translation_mse", "orientation_error"} <= metrics.keys()
    (artifact,) = json.loads(executor_output.read_text())["artifacts"]["metrics"]["artifacts"]
    assert artifact == {"name": "metrics", "uri": metrics_uri, "metadata": metrics}
    with gcs_emulator.client() as client:
        published = [b for b in client.list_blobs(bucket, prefix="cube/runs/") if b.name.endswith("/metrics.json")]
        (evaluation,) = [b for b in published if "_kfp-eval/" in b.name]
        assert json.loads(evaluation.download_as_text()) == pytest.approx(metrics)


def test_a_training_step_failing_at_start_fails_with_one_line_and_publishes_nothing_empty(gcs_emulator, tmp_path):
    spec = compile_spec(tmp_path, "--image", IMAGE, "--no-generate")
    train = next(t for t in spec["root"]["dag"]["tasks"].values() if t["taskInfo"]["name"] == "train")
    bucket = gcs_emulator.bucket({"cube/data/README": "no datasets here"})
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "CUBEPOSE_CACHE": str(tmp_path / "cache")}
    overrides = "--num_steps 2 --n_data_processes 1"
    values = {"configs": "configs/base.yaml configs/cpu.yaml", "overrides": overrides}
    values |= {"data_root": f"gs://{bucket}/cube/data", "run_root": f"gs://{bucket}/runs", "name": "broken"}
    checkpoint_file = tmp_path / "outputs" / "checkpoint"
    work = tmp_path / "train"
    result = run_step(spec, train, values | {"checkpoint": str(checkpoint_file)}, work, env, succeeds=False)
    assert not checkpoint_file.exists()
    assert f"error: no objects under gs://{bucket}/cube/data/train/" in result.stderr  # the step's log says why
    assert "Traceback" not in result.stderr
    assert not (work / "logs").exists() or not any((work / "logs").iterdir())  # edflow's empty run folder is gone
    with gcs_emulator.client() as client:
        assert not list(client.list_blobs(bucket, prefix="runs/"))  # so nothing empty was published


# -- cubepose publish on its own --------------------------------------------------------------


def fake_run(logs: Path, name: str, steps: tuple[int, ...] = (), metrics: dict | None = None) -> Path:
    """An edflow-shaped run folder: log, checkpoints of ``steps``, and an evaluation's metrics.json."""
    run = logs / name
    (run / "train" / "checkpoints").mkdir(parents=True)
    (run / "train" / "log.txt").write_text("log\n")
    for step in steps:
        (run / "train" / "checkpoints" / f"model-{step}.ckpt").write_bytes(b"w" * step)
    if metrics is not None:
        (run / "eval" / "2026-01-01T00-00-00_x" / "5").mkdir(parents=True)
        (run / "eval" / "2026-01-01T00-00-00_x" / "5" / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_publish_copies_the_newest_run_and_names_its_newest_checkpoint(tmp_path):
    logs = tmp_path / "logs"
    fake_run(logs, "2026-01-01T00-00-00_old", (1,))
    fake_run(logs, "2026-01-02T00-00-00_new", (5, 10, 40))
    out = tmp_path / "out" / "checkpoint"
    assert main(["publish", str(logs), "--to", str(tmp_path / "runs"), "--checkpoint-url-file", str(out)]) == 0
    published = tmp_path / "runs" / "2026-01-02T00-00-00_new"
    assert out.read_text() == str(published / "model-40.ckpt")
    assert sorted(p.relative_to(published).as_posix() for p in published.rglob("*") if p.is_file()) == [
        "model-40.ckpt",  # sent because no checkpoint/upload put it there; older ones are not
        "train/log.txt",
    ]
    assert not (tmp_path / "runs" / "2026-01-01T00-00-00_old").exists()


def test_publish_refuses_what_it_cannot_do(tmp_path, caplog):
    logs = tmp_path / "logs"
    assert main(["publish", str(logs), "--to", str(tmp_path / "runs")]) == 2
    assert "no edflow run folder in" in caplog.text
    fake_run(logs, "2026-01-01T00-00-00_eval")
    metrics_args = ["--kfp-metrics", str(tmp_path / "m")]
    assert main(["publish", str(logs), "--to", str(tmp_path / "runs"), *metrics_args]) == 2
    assert "--kfp-metrics and --kfp-executor-input go together" in caplog.text
    executor_input = ["--kfp-executor-input", '{"outputs": {}}']
    assert main(["publish", str(logs), "--to", str(tmp_path / "runs"), *metrics_args, *executor_input]) == 2
    assert "no metrics.json under" in caplog.text
    logs2 = tmp_path / "logs2"
    fake_run(logs2, "2026-01-01T00-00-00_eval", metrics={"translation_mse": 0.5})
    assert main(["publish", str(logs2), "--to", str(tmp_path / "runs"), *metrics_args, *executor_input]) == 2
    assert "is not a KFP executor input with a 'metrics' artifact" in caplog.text
    checkpoint_file = ["--checkpoint-url-file", str(tmp_path / "c")]
    assert main(["publish", str(logs2), "--to", str(tmp_path / "runs"), *checkpoint_file]) == 2
    assert "has no checkpoint to name" in caplog.text
