"""`cubepose serve` started for a test: a real server subprocess on a free loopback port."""

from __future__ import annotations

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


def untrained_checkpoint(folder: Path) -> Path:
    """An untrained CPU-config model at 32 px (seeded weights: its poses differ from image to image), saved as
    ``folder``/model-0.ckpt."""
    config = load_configs("base.yaml", "cpu.yaml")
    config["network"]["image_size"] = 32
    path = folder / "model-0.ckpt"
    PosePredictor(pose_network(validate_config(config)).eval(), config).save(path)
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
