"""Checkpoints under the real `edflow`: SIGKILL and resume, uploads to gs://, evaluation from gs:// and http://."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from edflow.data.believers.meta import MetaDataset
from test_edflow_e2e import BIN, CONFIGS, _eval_dirs, _ok, edflow

from conftest import load_configs

KILL_AFTER_STEP = 10


def _overrides(data: dict[str, Path]) -> list[str]:
    args = ["--network/image_size", "32", "--batch_size", "8"]
    args += ["--n_data_processes", "1", "--log_freq", "2", "--test_batch_size", "8"]
    for split, root in data.items():
        args += [f"--data/{split}/root", str(root)]
    return args


def _steps(run: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (run / "train" / "checkpoints").glob("model-*.ckpt"))


def test_a_run_killed_with_sigkill_resumes_with_its_step_and_optimizer_state(tiny_data, tmp_path):
    command = [str(BIN / "edflow"), "-n", "killed", "-b", *CONFIGS, "-t", "--num_steps", "100000", "--ckpt_freq", "2"]
    log = open(tmp_path / "killed.log", "wb")
    process = subprocess.Popen(
        command + _overrides(tiny_data), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        run = None
        while time.monotonic() < deadline and process.poll() is None:
            runs = list((tmp_path / "logs").glob("*_killed"))
            if runs and (run := runs[0]) and _steps(run) and _steps(run)[-1] >= KILL_AFTER_STEP:
                break
            time.sleep(0.05)
        assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # edflow and its data workers, mid-training (maybe mid-save)
        process.wait()
        log.close()
    assert process.returncode == -signal.SIGKILL

    checkpoints = sorted((run / "train" / "checkpoints").glob("model-*.ckpt"), key=lambda p: p.stat().st_mtime)
    latest = checkpoints[-1]  # what edflow resumes from
    step = int(latest.stem.split("-")[1])
    saved = torch.load(latest, weights_only=True)  # whole, never truncated
    assert saved["global_step"] == step
    assert {float(s["step"]) for s in saved["optimizer"]["state"].values()} == {float(step)}

    result = _ok(edflow(["-b", *CONFIGS, "-p", str(run), "-t", "--num_steps", str(step + 4)], tmp_path, tiny_data))
    assert f"Restored model from {latest}" in result.stderr + result.stdout
    assert f"Global step: {step}" in result.stderr + result.stdout
    final = torch.load(run / "train" / "checkpoints" / f"model-{step + 4}.ckpt", weights_only=True)
    assert {float(s["step"]) for s in final["optimizer"]["state"].values()} == {float(step + 4)}
    assert not list((run / "train" / "checkpoints").glob(".*.tmp"))


def test_checkpoints_upload_to_gcs_and_evaluate_from_gcs_and_http_with_a_pin(
    tiny_data, tmp_path, gcs_emulator, file_server
):
    bucket = gcs_emulator.bucket()
    upload = ["--checkpoint/upload", f"gs://{bucket}/runs"]
    _ok(edflow(["-n", "up", "-b", *CONFIGS, "-t", "--num_steps", "6", *upload], tmp_path, tiny_data))
    (run,) = (tmp_path / "logs").glob("*_up")
    local = run / "train" / "checkpoints" / "model-6.ckpt"
    with gcs_emulator.client() as client:
        names = [blob.name for blob in client.list_blobs(bucket)]
        assert names == [f"runs/{run.name}/model-6.ckpt"]
        assert client.bucket(bucket).blob(names[0]).download_as_bytes() == local.read_bytes()
    (local_outputs,) = _eval_dirs(run)
    expected = MetaDataset(str(local_outputs)).labels["translation_pred"]

    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    (file_server.folder / "model-6.ckpt").write_bytes(local.read_bytes())
    remotes = {"gcs": f"gs://{bucket}/runs/{run.name}/model-6.ckpt", "http": f"{file_server.url}/model-6.ckpt"}
    for name, url in remotes.items():
        work = tmp_path / name
        work.mkdir()
        _ok(edflow(["-n", name, "-b", *CONFIGS, "-c", url, "--checkpoint/sha256", digest], work, tiny_data))
        (outputs,) = _eval_dirs(next((work / "logs").glob(f"*_{name}")))
        assert outputs.parent.name == "6"  # the step comes from the URL's file name
        np.testing.assert_allclose(MetaDataset(str(outputs)).labels["translation_pred"], expected, atol=1e-6)

    other = hashlib.sha256(b"another checkpoint").hexdigest()
    wrong = edflow(["-b", *CONFIGS, "-c", remotes["http"], "--checkpoint/sha256", other], tmp_path, tiny_data)
    assert wrong.returncode != 0
    assert f"sha256 of {remotes['http']} is {digest}, but the pin says {other}" in wrong.stderr


def test_base_config_documents_the_checkpoint_keys():
    assert load_configs("base.yaml")["checkpoint"] == {"upload": None, "upload_attempts": 3, "sha256": None}
