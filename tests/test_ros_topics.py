"""The ROS topic node: a camera_info read as cubepose's camera, poses turned into the optical frame, and the node
on a real roscore publishing stamped poses for published images, dropping the frames it has no time for."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from serve_fixtures import solved_checkpoint, start_serve
from test_ros_node import NEEDS_ROS, SYSTEM_PYTHON, ros_installed, start_roscore

from conftest import BIN
from cubepose.geometry.camera import Camera
from cubepose.geometry.object import Box
from cubepose.inference.predictor import PosePredictor
from cubepose.models.codecs.keypoints import keypoint_pixels
from cubepose.serving.ros_topics import CameraInfoError, camera_info_topic, camera_query, optical_pose

K = [300.0, 0.0, 159.5, 0.0, 310.0, 119.5, 0.0, 0.0, 1.0]
P = [290.0, 0.0, 160.0, 0.0, 0.0, 295.0, 121.0, 0.0, 0.0, 0.0, 1.0, 0.0]
D = [-0.2, 0.05, 0.001, 0.0, 0.0]


def info(**fields) -> SimpleNamespace:
    """A CameraInfo's fields, as rospy hands them over."""
    return SimpleNamespace(**{"K": K, "P": P, "D": D, "distortion_model": "plumb_bob", **fields})


def test_a_camera_info_becomes_cubepose_s_camera_with_its_lens():
    query = camera_query(info())
    given = Camera.from_mapping({**query, "distortion": query["distortion"].split(",")})
    assert given.intrinsics.tolist() == [300.0, 310.0, 160.0, 120.0] and given.distortion[:5] == tuple(D)
    rectified = camera_query(info(), rectified=True)
    assert rectified == {"fx": "290.0", "fy": "295.0", "cx": "160.5", "cy": "121.5"}
    assert "distortion" not in camera_query(info(D=[0.0] * 5))
    with pytest.raises(CameraInfoError, match="distortion_model 'equidistant' is not read"):
        camera_query(info(distortion_model="equidistant"))
    with pytest.raises(CameraInfoError, match="is the camera calibrated"):
        camera_query(info(K=[0.0] * 9))
    assert camera_info_topic("/camera/color/image_raw") == "/camera/color/camera_info"


def test_a_pose_in_the_optical_frame_projects_with_opencv_where_cubepose_projects_it():
    """The published pose (y down, the object mirrored with the camera) puts the box's corners, through OpenCV's
    own projection, on the pixels cubepose's projection gives (less OpenCV's half pixel)."""
    translation, quaternion = [0.05, -0.03, 0.6], [0.2, -0.4, 0.1, 0.888]
    quaternion = list(np.asarray(quaternion) / np.linalg.norm(quaternion))
    corners = Box().corners()
    cubepose = keypoint_pixels(
        torch.as_tensor(corners),
        torch.tensor([translation], dtype=torch.float64),
        torch.tensor([quaternion], dtype=torch.float64),
        torch.tensor([[300.0, 310.0, 160.0, 120.0]], dtype=torch.float64),
    )[0].numpy()
    position, orientation = optical_pose(translation, quaternion)
    x, y, z, w = orientation
    rotation = cv2.Rodrigues(_matrix(x, y, z, w))[0]
    mirrored = corners * [1, -1, 1]
    opencv, _ = cv2.projectPoints(mirrored, rotation, np.array(position), np.array(K).reshape(3, 3), None)
    np.testing.assert_allclose(opencv[:, 0] + 0.5, cubepose, atol=1e-6)


def _matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


CAMERA_SCRIPT = """
import json, sys, time, rospy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from geometry_msgs.msg import PoseArray, PoseStamped
frames, info, burst = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
rospy.init_node("cubepose_test_camera", anonymous=True, disable_signals=True)
info_out = rospy.Publisher("/test_cam/camera_info", CameraInfo, queue_size=1, latch=True)
raw_out = rospy.Publisher("/test_cam/image_raw", Image, queue_size=100)
packed_out = rospy.Publisher("/test_cam/image_raw/compressed", CompressedImage, queue_size=100)
got = {"raw": [], "packed": [], "single": []}
rospy.Subscriber("/cubepose/poses", PoseArray, lambda m: got["raw"].append(m))
rospy.Subscriber("/cubepose_compressed/poses", PoseArray, lambda m: got["packed"].append(m))
rospy.Subscriber("/cubepose/pose", PoseStamped, lambda m: got["single"].append(m))
deadline = time.time() + 60
while time.time() < deadline and not (raw_out.get_num_connections() and packed_out.get_num_connections()
                                      and len(rospy.get_published_topics()) and info_out.get_num_connections() >= 2):
    time.sleep(0.1)
info_out.publish(CameraInfo(height=info["height"], width=info["width"], distortion_model="plumb_bob",
                            D=info["D"], K=info["K"], P=info["P"]))
time.sleep(1.0)
def wait(key, count, seconds=60):
    end = time.time() + seconds
    while len(got[key]) < count and time.time() < end:
        time.sleep(0.05)
for number, frame in enumerate(frames):  # one at a time: each answered before the next
    stamp = rospy.Time(1000 + number, 500)
    image = Image(encoding="rgb8", height=frame["height"], width=frame["width"], step=frame["width"] * 3,
                  data=open(frame["raw"], "rb").read())
    image.header.stamp, image.header.frame_id = stamp, "test_optical"
    raw_out.publish(image)
    wait("raw", number + 1)
    packed = CompressedImage(format="png", data=open(frame["png"], "rb").read())
    packed.header.stamp, packed.header.frame_id = stamp, "test_optical"
    packed_out.publish(packed)
    wait("packed", number + 1)
answered = len(got["raw"])
for number in range(burst):  # far faster than the service answers
    image = Image(encoding="rgb8", height=frames[0]["height"], width=frames[0]["width"],
                  step=frames[0]["width"] * 3, data=open(frames[0]["raw"], "rb").read())
    image.header.stamp, image.header.frame_id = rospy.Time(2000 + number), "test_optical"
    raw_out.publish(image)
    time.sleep(0.01)
time.sleep(3.0)
def pose(p):
    return {"position": [p.position.x, p.position.y, p.position.z],
            "orientation": [p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w]}
def array(m):
    return {"stamp": [m.header.stamp.secs, m.header.stamp.nsecs], "frame": m.header.frame_id,
            "poses": [pose(p) for p in m.poses]}
print(json.dumps({"raw": [array(m) for m in got["raw"]], "packed": [array(m) for m in got["packed"]],
                  "single": [[m.header.stamp.secs, m.header.frame_id, pose(m.pose)] for m in got["single"]],
                  "answered": answered}))
"""


@pytest.mark.skipif(not ros_installed(), reason=NEEDS_ROS)
def test_the_topic_node_publishes_stamped_poses_of_images_and_drops_what_it_cannot_keep_up_with(tmp_path):
    checkpoint = solved_checkpoint(tmp_path, "keypoints")
    rng = np.random.default_rng(3)
    frames, images = [], []
    for number in range(2):
        image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        images.append(image)
        (tmp_path / f"{number}.rgb").write_bytes(image.tobytes())
        Image.fromarray(image).save(tmp_path / f"{number}.png")
        frames.append(
            {"raw": str(tmp_path / f"{number}.rgb"), "png": str(tmp_path / f"{number}.png"), "width": 64, "height": 48}
        )
    camera = {
        "width": 64,
        "height": 48,
        "D": [-0.2, 0.05, 0.0, 0.0, 0.0],
        "K": [60.0, 0.0, 31.5, 0.0, 62.0, 23.5, 0.0, 0.0, 1.0],
        "P": [0.0] * 12,
    }
    lens = Camera(width=64, height=48, fx=60, fy=62, cx=32, cy=24, distortion=tuple(camera["D"]))
    expected = PosePredictor.load(checkpoint).predict(images, camera=lens)

    url, serve = start_serve(BIN / "cubepose", checkpoint, tmp_path / "serve.log", "--max-wait-ms", "250")
    env, roscore = start_roscore(tmp_path)
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("raw", "packed")}
    node = [SYSTEM_PYTHON, "-m", "cubepose.serving.ros_topics", "--server", url, "--image", "/test_cam/image_raw"]
    raw = subprocess.Popen(node, env=env, stdout=logs["raw"], stderr=logs["raw"])
    packed = subprocess.Popen(
        [*node, "--compressed", "--node-name", "cubepose_compressed"],
        env=env,
        stdout=logs["packed"],
        stderr=logs["packed"],
    )
    try:
        camera_run = subprocess.run(
            [SYSTEM_PYTHON, "-c", CAMERA_SCRIPT, json.dumps(frames), json.dumps(camera), "20"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert camera_run.returncode == 0, camera_run.stderr[-3000:] + (tmp_path / "raw.log").read_text()[-3000:]
        got = json.loads(camera_run.stdout.splitlines()[-1])
    finally:
        for process in (raw, packed, roscore, serve):
            process.send_signal(signal.SIGINT)
        for process in (raw, packed, roscore, serve):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs.values():
            log.close()

    for key in ("raw", "packed"):  # each image's poses, stamped as the image, in the optical frame
        answers = got[key][:2]
        assert [answer["stamp"] for answer in answers] == [[1000, 500], [1001, 500]]
        assert all(answer["frame"] == "test_optical" for answer in answers)
        for answer, translation, quaternion in zip(
            answers, expected["translation"], expected["quaternion"], strict=True
        ):
            position, orientation = optical_pose(list(map(float, translation)), list(map(float, quaternion)))
            np.testing.assert_allclose(answer["poses"][0]["position"], position, atol=1e-5)
            np.testing.assert_allclose(answer["poses"][0]["orientation"], orientation, atol=1e-5)
    assert [single[:2] for single in got["single"][:2]] == [[1000, "test_optical"], [1001, "test_optical"]]
    burst = [answer for answer in got["raw"] if answer["stamp"][0] >= 2000]
    assert 0 < len(burst) < 20 and burst[-1]["stamp"][0] == 2019  # frames dropped, the newest one answered
    assert "dropped" in Path(tmp_path / "raw.log").read_text()
