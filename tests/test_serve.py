"""`cubepose serve`: the real server in a subprocess on loopback, called by a real HTTP client."""

from __future__ import annotations

import hashlib
import io
import json
import re
import select
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from image_headers import png_header_claiming, sixteen_bit_png
from PIL import Image
from serve_fixtures import nan_checkpoint, start_serve, untrained_checkpoint

from conftest import BIN
from cubepose.inference.predictor import PosePredictor
from cubepose.serving.outlines import EDGE_SAMPLES


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return untrained_checkpoint(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def log_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-log") / "serve.log"


@pytest.fixture(scope="module")
def server(checkpoint, log_path):
    """`cubepose serve` on a free loopback port; stopped with SIGTERM, which it must survive gracefully."""
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
        (b"not an image", {}, 400, "not a PNG, JPEG or PPM image"),
        (None, {"fx": "60", "fy": "60"}, 400, "missing cx, cy"),
        (None, {"fx": "-1", "fy": "60", "cx": "24", "cy": "20"}, 400, "bad camera"),
        (None, {"fx": "1e308", "fy": "60", "cx": "24", "cy": "20"}, 400, "must be at most 1e+07 pixels"),
        (None, {"fx": "90", "fy": "60", "cx": "24", "cy": "20"}, 200, ""),  # unchecked: no training camera
        (None, {"outline": "maybe"}, 400, "outline must be true or false"),
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


def rss_mb(process) -> float:
    """The process's resident memory in MiB (Linux /proc)."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def raw_connection(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def whole_answer(sock: socket.socket) -> bytes:
    """The server's answer, headers and the Content-Length of body, which may come in several reads."""
    answer = b""
    try:
        while chunk := sock.recv(4096):
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            if length and len(body) >= int(length.group(1)):
                break
    except ConnectionResetError:
        pass  # the server closed a connection whose body it did not read
    sock.close()
    return answer


def test_a_chunked_body_is_refused_at_the_limit_not_read_whole(server):
    url, process = server
    before = rss_mb(process)
    sock = raw_connection(url)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk, sent = b"%x\r\n" % (1 << 20) + b"x" * (1 << 20) + b"\r\n", 0
    try:
        while sent < 300 and not select.select([sock], [], [], 0)[0]:  # up to 300 MiB, until the server answers
            sock.sendall(chunk)
            sent += 1
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed: the rest of the body was never read
    answer = whole_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413") and b"more than 1,048,576 bytes" in answer
    assert sent < 300 and rss_mb(process) - before < 64  # stopped early, memory not filled with the body
    assert requests.post(f"{url}/predict", data=png(2), timeout=30).status_code == 200


def test_a_client_leaving_mid_body_is_logged_as_such_not_as_a_server_error(server, log_path):
    url, _ = server
    sock = raw_connection(url)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n" + png(3)[:1000])
    sock.close()
    for _ in range(100):
        if "disconnected before sending its whole body" in log_path.read_text():
            break
        time.sleep(0.05)
    log = log_path.read_text()
    assert "disconnected before sending its whole body" in log
    assert "ClientDisconnect" not in log and "Traceback" not in log and '"status": 500' not in log


def test_an_image_header_claiming_a_bomb_gets_413_naming_the_limit(server):
    url, _ = server
    response = requests.post(f"{url}/predict", data=png_header_claiming(20000, 20000), timeout=30)
    assert response.status_code == 413 and "more than 4,000 pixels" in response.json()["error"]


@pytest.mark.parametrize(
    "option", [("--max-wait-ms", "inf"), ("--max-request-mb", "inf"), ("--max-wait-ms", "nan"), ("--max-batch", "0")]
)
def test_numeric_options_that_are_not_finite_or_out_of_range_stop_the_start(checkpoint, option):
    result = subprocess.run(
        [str(BIN / "cubepose"), "serve", "--checkpoint", str(checkpoint), *option],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and f"{option[0]} must be a finite number from" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_nan_keypoint_model_answers_422_naming_the_weights_not_500(tmp_path):
    url, process = start_serve(BIN / "cubepose", nan_checkpoint(tmp_path, "keypoints"), tmp_path / "serve.log")
    try:
        camera = {"fx": "40", "fy": "40", "cx": "24", "cy": "20"}
        response = requests.post(f"{url}/predict", data=png(4), params=camera, timeout=30)
        assert response.status_code == 422 and "use an earlier checkpoint" in response.json()["error"]
        response = requests.post(f"{url}/predict", data=png(4), timeout=30)  # and no camera to solve with
        assert response.status_code == 400 and "give the image's fx, fy, cx and cy" in response.json()["error"]
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_a_16_bit_png_is_answered_as_the_8_bit_image_it_shows(server, checkpoint):
    url, _ = server
    encoded, shown = sixteen_bit_png()
    response = requests.post(f"{url}/predict", data=encoded, timeout=30)
    assert response.status_code == 200
    expected = PosePredictor.load(checkpoint).predict([shown])
    np.testing.assert_allclose(response.json()["poses"][0]["translation"], expected["translation"][0], atol=1e-5)


def test_outline_adds_the_camera_used_and_each_poses_box_and_axes_in_the_images_pixels(server):
    url, _ = server
    camera = {"fx": "60", "fy": "55", "cx": "24", "cy": "20", "distortion": "-0.2,0.05,0,0"}
    response = requests.post(f"{url}/predict", data=png(0), params={**camera, "outline": "true"}, timeout=30)
    assert response.status_code == 200
    answer = response.json()
    assert answer["camera"] == [60.0, 55.0, 24.0, 20.0, -0.2, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    (pose,) = answer["poses"]
    box, axes = np.array(pose["outline"]["box"]), np.array(pose["outline"]["axes"])
    assert box.shape == (12, EDGE_SAMPLES, 2) and axes.shape == (3, EDGE_SAMPLES, 2)
    # the axes start at the object's centre: where the lens puts the projection of its translation
    x, y, z = pose["translation"]
    u, v = x / z, -y / z  # normalised image coordinates (cubepose's frame: y up)
    radius2 = u * u + v * v
    scale = 1 - 0.2 * radius2 + 0.05 * radius2**2
    expected = [24 + 60 * u * scale, 20 + 55 * v * scale]
    np.testing.assert_allclose(axes[:, 0], [expected] * 3, atol=0.01)
    plain = requests.post(f"{url}/predict", data=png(0), timeout=30).json()
    assert "camera" not in plain and "outline" not in plain["poses"][0]  # only when asked
    # the model records no training camera and none was given: nothing to project with, no outline
    unknown = requests.post(f"{url}/predict", data=png(0), params={"outline": "true"}, timeout=30).json()
    assert "camera" not in unknown and "outline" not in unknown["poses"][0]


def test_the_page_and_its_files_are_served_under_a_content_security_policy(server):
    url, _ = server
    page = requests.get(f"{url}/", timeout=5)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for script in re.findall(r'src="(/page/[^"]+)"', page.text):
        assert requests.get(f"{url}{script}", timeout=5).status_code == 200
