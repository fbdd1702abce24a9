"""Data-parallel training with torch.distributed: real ranks started by the real `torchrun` (gloo on CPU,
loopback only), against one process doing the same arithmetic."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from gcs_fixtures import free_port

from conftest import BIN, REPO
from cubepose.engine.ranked_edflow import ranked_arguments, restarted_arguments
from cubepose.errors import ConfigError
from cubepose.training.distributed import Ranks, launched_ranks, shard

WORKER = REPO / "tests" / "distributed_worker.py"
CONFIGS = [str(REPO / "configs" / "base.yaml"), str(REPO / "configs" / "cpu.yaml")]
TORCHRUN = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "cubepose.engine.ranked_edflow"]


def tiny_overrides(data: dict[str, Path]) -> list[str]:
    """The tiny network and data, batches of 4 per rank, one loader process."""
    overrides = ["--network/image_size", "32", "--batch_size", "4", "--n_data_processes", "1", "--log_freq", "3"]
    return overrides + [value for split, root in data.items() for value in (f"--data/{split}/root", str(root))]


def checkpoint_steps(run: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (run / "train" / "checkpoints").glob("model-*.ckpt"))


def run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_ranks_train_on_disjoint_shares_and_average_their_gradients(tiny_data, tmp_path):
    ranks, alone = tmp_path / "ranks", tmp_path / "alone"
    data = str(tiny_data["train"])
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(WORKER)]
    run([*torchrun, data, str(ranks), "--steps", "3"], tmp_path)
    run([sys.executable, str(WORKER), data, str(alone), "--steps", "3", "--reference"], tmp_path)

    shares = [set(json.loads((ranks / f"images-rank{rank}.json").read_text())) for rank in (0, 1)]
    everything = set(json.loads((alone / "images-rank0.json").read_text()))
    assert not shares[0] & shares[1] and shares[0] | shares[1] == everything  # 48 images: 24 each, all used
    distributed, reference = torch.load(ranks / "weights.pt"), torch.load(alone / "weights.pt")
    initial = torch.load(ranks / "initial.pt")
    assert distributed.keys() == reference.keys() == initial.keys()
    # Adam divides each gradient by its own size, so float rounding of the summed gradients (a different order of
    # additions) shows in the weights: measured 0.3% of the update overall, 0.6% at most per tensor; ranks that did
    # not average their gradients, or trained on other examples, differ by tens of percent
    for name in reference:
        update = (reference[name] - initial[name]).norm()
        assert update > 0 and (distributed[name] - reference[name]).norm() < 0.02 * update, name


def test_shares_are_disjoint_equal_and_cover_all_but_the_remainder():
    shares = [shard(50, Ranks(rank, 3)) for rank in range(3)]
    assert [len(share) for share in shares] == [16, 16, 16]  # every rank takes as many steps
    together = sorted(int(i) for share in shares for i in share)
    assert together == list(range(48))


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"RANK": "x", "WORLD_SIZE": "2"}, "must be integers"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK 2 of WORLD_SIZE 2"),
    ],
)
def test_an_impossible_rank_environment_is_named(environ, named):
    with pytest.raises(ConfigError, match=named):
        launched_ranks(environ)


def test_two_ranks_through_edflow_make_one_run_that_resumes_with_one_rank(tiny_data, tmp_path):
    trained = subprocess.run(
        [*TORCHRUN, "-n", "ddp", "-b", *CONFIGS, "-t", "--num_steps", "6", *tiny_overrides(tiny_data)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = (tmp_path / "logs").iterdir()  # one run folder: rank 1's was removed
    assert run.name.endswith("_ddp") and checkpoint_steps(run) == [6]
    output = trained.stdout + trained.stderr
    assert (
        "data-parallel training on 2 ranks: batch 4 per rank x 2 ranks x 1 accumulation steps = an effective "
        "batch of 8" in output
    )
    assert "each rank trains on its own 24 examples of the split" in output  # 48 images, disjoint halves
    (ranked,) = run.glob("eval/*/6/metrics.json")  # rank 0 evaluated once
    alone = subprocess.run(
        [str(BIN / "edflow"), "-b", *CONFIGS, "-p", str(run), *tiny_overrides(tiny_data)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )  # the same checkpoint evaluated by one process without torchrun: the same metrics
    assert alone.returncode == 0, alone.stderr[-3000:]
    (single,) = [path for path in run.glob("eval/*/6/metrics.json") if path != ranked]
    assert json.loads(single.read_text()) == pytest.approx(json.loads(ranked.read_text()), nan_ok=True)

    resumed = subprocess.run(
        [str(BIN / "edflow"), "-b", *CONFIGS, "-p", str(run), "-t", "--num_steps", "9", *tiny_overrides(tiny_data)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = torch.load(run / "train" / "checkpoints" / "model-9.ckpt", weights_only=True)
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {9.0}  # 6 data-parallel + 3 alone
    assert [p.name for p in (tmp_path / "logs").iterdir()] == [run.name]


def test_two_nodes_on_loopback_meet_at_a_c10d_rendezvous_and_checkpoint_once(tiny_data, tmp_path):
    """Two torchrun agents, one rank each, as two machines would run them (`--nnodes 2`, c10d rendezvous)."""
    nodes = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "cubepose-nodes"]
    nodes += ["--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    command = [str(BIN / "torchrun"), *nodes, "-m", "cubepose.engine.ranked_edflow", "-n", "nodes", "-b", *CONFIGS]
    command += ["-t", "--num_steps", "4", *tiny_overrides(tiny_data)]
    logs = [open(tmp_path / f"node{node}.log", "w") for node in (0, 1)]
    agents = [subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        codes = [agent.wait(timeout=300) for agent in agents]
    finally:
        for agent, log in zip(agents, logs, strict=True):
            if agent.poll() is None:
                agent.kill()
            log.close()
    assert codes == [0, 0], [(tmp_path / f"node{node}.log").read_text()[-2000:] for node in (0, 1)]
    (run,) = (tmp_path / "logs").iterdir()
    assert checkpoint_steps(run) == [4]
    output = "".join((tmp_path / f"node{node}.log").read_text() for node in (0, 1))
    assert "data-parallel training on 2 ranks" in output


def test_a_divergence_on_the_ranks_stops_them_all_with_one_message_and_no_nan_checkpoint(tiny_data, tmp_path):
    command = [*TORCHRUN, "-n", "diverge", "-b", *CONFIGS, "-t", "--num_steps", "12", "--optimizer/lr", "1e6"]
    result = subprocess.run(
        [*command, *tiny_overrides(tiny_data)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    output = (result.stdout + result.stderr).replace("\r", "\n")
    lines = [re.sub(r"^\[rank\d+\]: ", "", line) for line in output.splitlines()]  # torchrun's prefix
    (line,) = [line for line in lines if line.startswith("error:")]  # rank 0 alone writes it
    assert "training stopped at global step" in line and "optimizer/lr 1e+06 is too high" in line
    assert "(on rank 0 of 2; every rank stopped)" in line and "No checkpoint was written" in line
    assert not list(tmp_path.glob("logs/*/train/checkpoints/*.ckpt"))


def rank_pids(parent: int) -> dict[int, int]:
    """The processes torchrun started under ``parent``, by their RANK."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        rank = [v.split(b"=", 1)[1] for v in environ if v.startswith(b"RANK=")]
        if rank and int(stat[1]) == parent:
            found[int(rank[0])] = int(entry.name)
    return found


def start_job(command: list[str], data: dict[str, Path], tmp_path: Path) -> tuple[subprocess.Popen, object]:
    """A torchrun job on the tiny data in ``tmp_path``, its output in job.log (the log handle is returned)."""
    log = open(tmp_path / "job.log", "w")
    job = subprocess.Popen([*command, *tiny_overrides(data)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    return job, log


def kill_rank_1_after_a_checkpoint(job: subprocess.Popen, tmp_path: Path, name: str) -> int:
    """Wait until the run ``*_<name>`` holds a checkpoint of step 4 or later, SIGKILL rank 1, return that step."""
    deadline = time.monotonic() + 300
    runs: list[Path] = []
    while time.monotonic() < deadline and job.poll() is None:
        runs = list((tmp_path / "logs").glob(f"*_{name}")) if (tmp_path / "logs").exists() else []
        if runs and checkpoint_steps(runs[0]) and checkpoint_steps(runs[0])[-1] >= 4:
            break
        time.sleep(0.1)
    ranks = rank_pids(job.pid)
    assert job.poll() is None and set(ranks) == {0, 1}, (tmp_path / "job.log").read_text()[-3000:]
    step = checkpoint_steps(runs[0])[-1]
    os.kill(ranks[1], signal.SIGKILL)
    return step


def test_a_rank_killed_ends_the_job_naming_it_and_one_rank_resumes_from_the_last_checkpoint(tiny_data, tmp_path):
    command = [*TORCHRUN, "-n", "killed", "-b", *CONFIGS, "-t", "--num_steps", "100000", "--ckpt_freq", "2"]
    job, log = start_job(command, tiny_data, tmp_path)
    try:
        kill_rank_1_after_a_checkpoint(job, tmp_path, "killed")
        killed_at = time.monotonic()
        job.wait(timeout=120)
        ended_after = time.monotonic() - killed_at
    finally:
        if job.poll() is None:
            job.kill()
        log.close()
    output = (tmp_path / "job.log").read_text()
    assert job.returncode != 0 and ended_after < 60  # the whole job, not a hang waiting for the lost rank
    assert "local_rank: 1" in output and "Signal 9 (SIGKILL)" in output  # torchrun names the rank and the cause
    (run,) = (tmp_path / "logs").glob("*_killed")
    step = checkpoint_steps(run)[-1]
    resumed = subprocess.run(
        [str(BIN / "edflow"), "-b", *CONFIGS, "-p", str(run), "-t", "--num_steps", str(step + 2)]
        + tiny_overrides(tiny_data),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = torch.load(run / "train" / "checkpoints" / f"model-{step + 2}.ckpt", weights_only=True)
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {float(step + 2)}


def test_a_restarted_training_command_resumes_the_newest_run_of_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("2026-01-01T00-00-00_exp", "2026-01-02T00-00-00_exp", "2026-01-03T00-00-00_other"):
        (tmp_path / "logs" / name / "train" / "checkpoints").mkdir(parents=True)
        (tmp_path / "logs" / name / "train" / "checkpoints" / "model-2.ckpt").write_bytes(b"")
    (tmp_path / "logs" / "2026-01-04T00-00-00_exp").mkdir()  # newer, but nothing to resume
    arguments = ["-n", "exp", "-b", "a.yaml", "-t"]
    assert restarted_arguments(arguments, 0) == arguments  # the first attempt starts a run
    assert restarted_arguments(arguments, 1) == [*arguments, "-p", str(Path("logs/2026-01-02T00-00-00_exp"))]
    assert restarted_arguments([*arguments, "-p", "logs/x"], 1) == [*arguments, "-p", "logs/x"]  # named: kept
    assert restarted_arguments(["-n", "exp", "-b", "a.yaml"], 1) == ["-n", "exp", "-b", "a.yaml"]  # evaluation


@pytest.mark.parametrize(
    ("arguments", "rank", "expected"),
    [
        (["-n", "exp", "-b", "a.yaml", "-t"], 1, ["-n", "exp.rank1", "-b", "a.yaml", "-t"]),
        (["--name=exp", "-t"], 2, ["--name=exp.rank2", "-t"]),
        (["-b", "a.yaml", "-p", "logs/run", "-t"], 1, ["-b", "a.yaml", "-p", "logs/run", "-t", "-n", "rank1"]),
        (["-n", "exp", "-t"], 0, ["-n", "exp", "-t"]),
    ],
)
def test_every_rank_but_0_names_its_edflow_folder_apart(arguments, rank, expected):
    assert ranked_arguments(arguments, rank) == expected  # edflow names folders by the second: no collision


def test_a_job_torchrun_restarts_after_a_rank_dies_resumes_its_run_from_the_last_checkpoint(tiny_data, tmp_path):
    restarting = [*TORCHRUN[:-2], "--max-restarts", "1", *TORCHRUN[-2:]]
    command = [*restarting, "-n", "restarted", "-b", *CONFIGS, "-t", "--num_steps", "24", "--ckpt_freq", "2"]
    job, log = start_job(command, tiny_data, tmp_path)
    try:
        killed_at = kill_rank_1_after_a_checkpoint(job, tmp_path, "restarted")
        assert job.wait(timeout=300) == 0, (tmp_path / "job.log").read_text()[-3000:]
    finally:
        if job.poll() is None:
            job.kill()
        log.close()
    (run,) = (tmp_path / "logs").glob("*_restarted")  # the restart went on in the same run
    assert [p.name for p in (tmp_path / "logs").iterdir()] == [run.name]
    assert "resuming" in (tmp_path / "job.log").read_text() and killed_at < 24
    state = torch.load(run / "train" / "checkpoints" / "model-24.ckpt", weights_only=True)
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {24.0}  # no step trained twice
