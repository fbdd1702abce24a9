"""`cubepose serve` started for a test: a real server subprocess on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
