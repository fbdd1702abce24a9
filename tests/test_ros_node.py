"""The ROS drop-in for Unity's tutorial service: image conversion in memory, then the real node on a real
roscore on loopback, called by a real rospy client, answering through a real `cubepose serve`."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from gcs_fixtures import free_port
from PIL import Image
from serve_fixtures import start_serve, untrained_checkpoint

from conftest import BIN, REPO
from cubepose.geometry.camera import Camera
from cubepose.inference.predictor import PosePredictor
from cubepose.serving.ros_node import ImageError, image_as_ppm
from cubepose.synth.generate import GenerationOptions, generate_dataset, scene_options

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's ROS Python packages live in its dist-packages
ROS_IMPORTS = "import rospy, genpy, genmsg, sensor_msgs.msg, geometry_msgs.msg"
NEEDS_ROS = "needs Debian's ROS packages (roscore, rospy, genpy, message definitions): run `sudo make ros-deps`"


def ros_installed() -> bool:
    if shutil.which("roscore") is None or not Path(SYSTEM_PYTHON).exists():
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", ROS_IMPORTS], capture_output=True).returncode == 0


def upright(seed: int = 0, width: int = 5, height: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def decoded(ppm: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(ppm)))


def tutorial_fields(rgb: np.ndarray) -> tuple:
    """What Unity's tutorial sends: RGBA rows bottom-up, height holding the width and width the height."""
    height, width, _ = rgb.shape
    rgba = np.concatenate([rgb, np.full((height, width, 1), 255, np.uint8)], axis=2)[::-1]
    return "RGBA", width, height, 4 * height, rgba.tobytes()


def test_the_tutorials_flipped_rgba_with_swapped_sizes_is_read_upright():
    rgb = upright()
    assert np.array_equal(decoded(image_as_ppm(*tutorial_fields(rgb))), rgb)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_standard_encodings_with_padded_rows_are_read_as_rgb(encoding):
    rgb = upright(1)
    pixels = rgb[..., ::-1] if encoding.startswith("bgr") else rgb
    if encoding.endswith("a8"):
        pixels = np.concatenate([pixels, np.zeros((3, 5, 1), np.uint8)], axis=2)
    padded = np.zeros((3, pixels.shape[1] * pixels.shape[2] + 7), np.uint8)  # 7 bytes of padding per row
    padded[:, : pixels.shape[1] * pixels.shape[2]] = pixels.reshape(3, -1)
    assert np.array_equal(decoded(image_as_ppm(encoding, 3, 5, padded.shape[1], padded.tobytes())), rgb)


def test_mono8_is_read_as_grey():
    grey = upright(2)[..., 0]
    assert np.array_equal(decoded(image_as_ppm("mono8", 3, 5, 5, grey.tobytes())), grey)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (("32FC1", 3, 5, 20, bytes(60)), "encoding '32FC1' is not supported; send one of RGBA, rgb8"),
        (("rgb8", 3, 5, 15, bytes(44)), "holds 44 bytes with step 15"),
        (("rgb8", 3, 5, 10, bytes(45)), "rows of at least 15 bytes"),
        (("rgb8", 0, 5, 15, b""), "the image is 5x0 pixels"),
        (("rgb8", 3000, 3000, 9000, b""), "the image is 3000x3000 pixels; send one of 1 to 1,000,000"),
        (("RGBA", 5, 3, 12, bytes(64)), "must hold 60 bytes, not 64: height holds the width"),
    ],
)
def test_bad_images_are_refused_naming_the_fix(fields, named):
    with pytest.raises(ImageError, match=re.escape(named)):
        image_as_ppm(*fields, max_pixels=1_000_000)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> np.ndarray:
    """One rendered 64x48 image of the cube (not square, so swapped sizes would show)."""
    root = tmp_path_factory.mktemp("ros-data")
    scene = scene_options(camera=Camera.from_values((64, 48, 55.0, 55.0, 32.0, 24.0)))
    generate_dataset(root, GenerationOptions(count=1, seed=5, scene=scene, workers=1))
    (path,) = root.rglob("*.png")
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return untrained_checkpoint(tmp_path_factory.mktemp("ros-model"))


def start_roscore(folder: Path) -> tuple[dict[str, str], subprocess.Popen]:
    """A ``roscore`` on a free loopback port logging into ``folder``, and the environment that reaches it (with
    cubepose importable by the system's Python)."""
    master_port = free_port()
    env = {
        **os.environ,
        "ROS_MASTER_URI": f"http://127.0.0.1:{master_port}",
        "ROS_IP": "127.0.0.1",
        "ROS_HOME": str(folder / "ros"),
        "PYTHONPATH": str(REPO),
    }
    with open(folder / "roscore.log", "w") as log:
        roscore = subprocess.Popen(["roscore", "-p", str(master_port)], env=env, stdout=subprocess.DEVNULL, stderr=log)
    return env, roscore


CLIENT = """
import json, sys, rospy
from sensor_msgs.msg import Image
from cubepose.serving.ros_node import pose_estimation_service_class
service, requests = sys.argv[1], json.loads(sys.argv[2])
rospy.init_node("cubepose_test_client", anonymous=True, disable_signals=True)
rospy.wait_for_service(service, timeout=60)
call = rospy.ServiceProxy(service, pose_estimation_service_class())
answers = []
for encoding, height, width, step, path in requests:
    image = Image(encoding=encoding, height=height, width=width, step=step, data=open(path, "rb").read())
    try:
        pose = call(image).estimated_pose
        position, orientation = pose.position, pose.orientation
        answers.append({"position": [position.x, position.y, position.z],
                        "orientation": [orientation.x, orientation.y, orientation.z, orientation.w]})
    except rospy.ServiceException as err:
        answers.append({"error": str(err)})
print(json.dumps(answers))
"""


@pytest.mark.skipif(not ros_installed(), reason=NEEDS_ROS)
def test_the_node_answers_the_tutorials_service_on_a_real_roscore(rendered, checkpoint, tmp_path):
    image = rendered
    predictor = PosePredictor.load(checkpoint)
    expected = predictor.predict([image])
    for wrong in (image[::-1], image[..., ::-1]):  # the conversion matters: a wrong flip or channel order differs
        assert not np.allclose(predictor.predict([wrong])["translation"], expected["translation"], rtol=0, atol=1e-7)

    tutorial = tutorial_fields(image)
    bgr = ("bgr8", 48, 64, 64 * 3, np.ascontiguousarray(image[..., ::-1]).tobytes())
    requests = []
    for name, (encoding, height, width, step, data) in {"tutorial": tutorial, "bgr": bgr}.items():
        (tmp_path / name).write_bytes(data)
        requests.append([encoding, height, width, step, str(tmp_path / name)])
    (tmp_path / "short").write_bytes(bgr[4][:100])
    requests.append(["bgr8", 48, 64, 64 * 3, str(tmp_path / "short")])

    url, serve = start_serve(BIN / "cubepose", checkpoint, tmp_path / "serve.log")
    env, roscore = start_roscore(tmp_path)
    node_log = open(tmp_path / "node.log", "w")
    node = subprocess.Popen(
        [SYSTEM_PYTHON, "-m", "cubepose.serving.ros_node", "--server", url, "--service", "test_pose_estimation"],
        env=env,
        stdout=node_log,
        stderr=node_log,
    )
    try:
        client = subprocess.run(
            [SYSTEM_PYTHON, "-c", CLIENT, "test_pose_estimation", json.dumps(requests)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert client.returncode == 0, client.stderr[-3000:] + (tmp_path / "node.log").read_text()[-3000:]
        tutorial_answer, bgr_answer, short_answer = json.loads(client.stdout.splitlines()[-1])
    finally:
        for process in (node, roscore, serve):
            process.send_signal(signal.SIGINT)
        for process in (node, roscore, serve):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        node_log.close()

    for answer in (tutorial_answer, bgr_answer):  # the same pose as cubepose predicts for the rendered PNG
        assert np.allclose(answer["position"], expected["translation"][0], rtol=0, atol=1e-7), answer
        assert np.allclose(answer["orientation"], expected["quaternion"][0], rtol=0, atol=1e-7), answer
        assert answer["orientation"][3] >= 0  # canonical (x, y, z, w)
    assert "holds 100 bytes with step 192" in short_answer["error"]
