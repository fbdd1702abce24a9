"""`cubepose serve`: the real server in a subprocess on loopback, called by a real HTTP client."""

from __future__ import annotations

import hashlib
import io
import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from serve_fixtures import start_serve, untrained_checkpoint

from conftest import BIN
from cubepose.inference.predictor import PosePredictor


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return untrained_checkpoint(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    """`cubepose serve` on a free loopback port; stopped with SIGTERM, which it must survive gracefully."""
    log_path = tmp_path_factory.mktemp("serve-log") / "serve.log"
    limits = ["--max-request-mb", "1", "--max-image-pixels", "4000"]
    url, process = start_serve(
        BIN / "cubepose", checkpoint, log_path, "--max-batch", "4", "--max-wait-ms", "50", *limits
    )
    yield url, process
    process.terminate()
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
    log = log_path.read_text()
    assert "stopped: every request in flight was answered" in log  # the graceful path, not a kill
    assert '"path": "/predict"' in log and '"status": 200' in log  # one structured access line per request


def png(seed: int, size: tuple[int, int] = (48, 40)) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_concurrent_requests_are_batched_and_answer_as_the_predictor_does(server, checkpoint):
    url, _ = server
    bodies = [png(seed) for seed in range(8)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda body: requests.post(f"{url}/predict", data=body, timeout=30), bodies))
    assert [r.status_code for r in responses] == [200] * 8
    assert max(int(r.headers["x-batch-size"]) for r in responses) > 1  # requests shared a forward pass
    images = [np.asarray(Image.open(io.BytesIO(body)).convert("RGB")) for body in bodies]
    expected = PosePredictor.load(checkpoint).predict(images)
    for response, translation, quaternion in zip(
        responses, expected["translation"], expected["quaternion"], strict=True
    ):
        (pose,) = response.json()["poses"]
        np.testing.assert_allclose(pose["translation"], translation, atol=1e-5)
        np.testing.assert_allclose(pose["quaternion"], quaternion, atol=1e-5)


def test_health_ready_and_the_models_identity(server, checkpoint):
    url, _ = server
    assert requests.get(f"{url}/health", timeout=5).json() == {"status": "ok"}
    identity = requests.get(f"{url}/model", timeout=5).json()
    assert identity["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert identity["checkpoint"] == str(checkpoint) and identity["network"]["image_size"] == 32


@pytest.mark.parametrize(
    ("body", "query", "status", "named"),
    [
        (b"", {}, 400, "the request body is empty"),
        (b"not an image", {}, 400, "not a readable PNG, JPEG or PPM"),
        (None, {"fx": "60", "fy": "60"}, 400, "missing cx, cy"),
        (None, {"fx": "-1", "fy": "60", "cx": "24", "cy": "20"}, 400, "bad camera"),
        (None, {"fx": "90", "fy": "60", "cx": "24", "cy": "20"}, 200, ""),  # unchecked: no training camera
    ],
)
def test_bad_requests_get_a_4xx_naming_the_problem(server, body, query, status, named):
    url, process = server
    response = requests.post(f"{url}/predict", data=png(0) if body is None else body, params=query, timeout=30)
    assert response.status_code == status
    if named:
        assert named in response.json()["error"] and "Traceback" not in response.text
    assert process.poll() is None  # the service goes on


def test_bodies_and_images_over_the_limits_are_refused(server):
    url, _ = server
    response = requests.post(f"{url}/predict", data=b"x" * (2 * 1024 * 1024), timeout=60)  # --max-request-mb 1
    assert response.status_code == 413 and "more than 1,048,576" in response.json()["error"]
    response = requests.post(f"{url}/predict", data=png(0, size=(100, 50)), timeout=30)  # --max-image-pixels 4000
    assert response.status_code == 413 and "100x50 pixels, more than 4,000" in response.json()["error"]
    assert json.loads(requests.post(f"{url}/predict", data=png(1), timeout=30).text)["poses"]  # still serving
