"""`cubepose serve` started for a test: a real server subprocess on a free loopback port."""

from __future__ import annotations

import copy
import math
import subprocess
import time
from pathlib import Path

import pytest
import requests
from gcs_fixtures import free_port

from conftest import load_configs
from cubepose.config import validate_config
from cubepose.inference.predictor import PosePredictor
from cubepose.models import pose_network
from cubepose.training.checkpoints import save_checkpoint


def untrained_checkpoint(folder: Path) -> Path:
    """An untrained CPU-config model at 32 px (seeded weights: its poses differ from image to image), saved as
    ``folder``/model-0.ckpt."""
    config = load_configs("base.yaml", "cpu.yaml")
    config["network"]["image_size"] = 32
    path = folder / "model-0.ckpt"
    PosePredictor(pose_network(validate_config(config)).eval(), config).save(path)
    return path


SOLVED_NETWORKS = {  # the network types whose poses come from a PnP solve, at sizes that build in milliseconds
    "keypoints": {
        "network": {"type": "keypoints", "image_size": 64},
        "losses": {"keypoints": {"type": "heatmap", "weight": 1.0}},
    },
    "zoom": {
        "network": {"type": "zoom", "image_size": 64, "zoom": {"locate_size": 32, "crop_size": 32}},
        "losses": {"keypoints": {"type": "heatmap", "weight": 1.0}, "detection": {"type": "detection", "weight": 1.0}},
    },
}


def solved_checkpoint(folder: Path, network: str) -> Path:
    """``folder``/model-0.ckpt: an untrained ``SOLVED_NETWORKS`` model (seeded weights), solving with any camera."""
    config = validate_config(copy.deepcopy(SOLVED_NETWORKS[network]))
    path = folder / "model-0.ckpt"
    PosePredictor(pose_network(config).eval(), config).save(path)
    return path


def nan_checkpoint(folder: Path, network: str) -> Path:
    """``folder``/model-5.ckpt: a ``SOLVED_NETWORKS`` model whose every weight is NaN, as a diverged run saves."""
    config = validate_config(copy.deepcopy(SOLVED_NETWORKS[network]))
    state = pose_network(config).state_dict()
    poisoned = {name: value.fill_(math.nan) if value.is_floating_point() else value for name, value in state.items()}
    path = folder / "model-5.ckpt"
    save_checkpoint(path, model=poisoned, global_step=5, config=config)
    return path


def start_serve(cubepose: Path, checkpoint: Path, log_path: Path, *flags: str) -> tuple[str, subprocess.Popen]:
    """Start ``cubepose serve`` logging to ``log_path`` (a file: a pipe nobody reads would block it) and
    return its URL and process once ``GET /ready`` answers 200."""
    port = free_port()
    with open(log_path, "w") as log:
        command = [str(cubepose), "serve", "--checkpoint", str(checkpoint), "--port", str(port), *flags]
        process = subprocess.Popen(command, stderr=log, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(f"{url}/ready", timeout=1).status_code == 200:
                return url, process
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"cubepose serve did not become ready: {log_path.read_text()[-2000:]}")
