"""Lens distortion: OpenCV's model both ways, calibration files (ROS camera_info, OpenCV), a zoom-in model's
solve through a distorted lens, and images rendered through one."""

from __future__ import annotations

import json
import math
import subprocess

import cv2
import numpy as np
import pytest
import requests
import roma
import torch
from PIL import Image
from serve_fixtures import solved_checkpoint, start_serve
from test_keypoint_model import random_poses
from test_zoom_model import perfect_outputs, zoom_config

from conftest import BIN
from cubepose.cli import main
from cubepose.config import validate_config
from cubepose.data import TrainDataset
from cubepose.data.calibration import camera_info_yaml, read_calibration
from cubepose.data.formats import read_dataset
from cubepose.errors import CubeposeError
from cubepose.geometry.camera import Camera, CameraError
from cubepose.geometry.distortion import distort, undistort
from cubepose.geometry.object import Box
from cubepose.inference.predictor import PosePredictor
from cubepose.models import pose_network
from cubepose.models.codecs.keypoints import keypoint_pixels, object_keypoints, solve_pnp
from cubepose.synth.generate import scene_options
from cubepose.synth.gl_renderer import GLRenderer
from cubepose.synth.lens import LensWarp
from cubepose.synth.scene import sample_scene
from cubepose.training.step import TrainingStep

WEBCAM = Camera(width=640, height=480, fx=600, fy=600, cx=320, cy=240, distortion=(-0.3, 0.1, 0.001, -0.002, 0.0))
RATIONAL = (0.2, -0.1, 0.0005, 0.0003, 0.01, 0.25, -0.08, 0.02)  # a rational_polynomial calibration


def grid(width: int, height: int, step: int = 20) -> torch.Tensor:
    """(1, N, 2) pixels covering a width x height image, borders included."""
    u, v = np.meshgrid(np.arange(0, width + 1, step), np.arange(0, height + 1, step))
    return torch.from_numpy(np.stack([u, v], -1).reshape(1, -1, 2).astype(np.float64))


@pytest.mark.parametrize("coefficients", [WEBCAM.distortion[:5], RATIONAL])
def test_opencvs_distortion_is_undone_within_a_hundredth_of_a_pixel(coefficients):
    """Points distorted by OpenCV's own projectPoints (its pixel centres on whole numbers) undistort back to the
    ideal pixels within 0.01 px over the whole image, and cubepose's forward model is OpenCV's."""
    camera = Camera(width=640, height=480, fx=600, fy=600, cx=320, cy=240, distortion=coefficients)
    ideal = grid(640, 480)
    normalised = np.concatenate([(ideal[0].numpy() - [320, 240]) / 600, np.ones((ideal.shape[1], 1))], axis=1)
    opencv_matrix = np.array([[600, 0, 319.5], [0, 600, 239.5], [0, 0, 1]])
    by_opencv, _ = cv2.projectPoints(normalised, np.zeros(3), np.zeros(3), opencv_matrix, np.array(coefficients))
    distorted = torch.from_numpy(by_opencv[:, 0] + 0.5)[None]  # cubepose's pixel centres
    parameters = torch.as_tensor(camera.parameters)[None]
    assert (distort(ideal, parameters) - distorted).abs().max() < 1e-9
    assert (undistort(distorted, parameters) - ideal).norm(dim=-1).max() < 0.01


def test_a_pose_through_a_distorted_lens_is_solved_exactly_and_ignoring_the_lens_costs_centimetres():
    """Keypoints where the lens puts them solve to the true pose with the distortion, and to a wrong one without."""
    targets = random_poses(16)
    targets["translation"] = targets["translation"] * torch.tensor([3.0, 3.0, 1.0])  # spread across the image
    camera = torch.as_tensor(WEBCAM.parameters)[None].expand(16, -1)
    points = torch.as_tensor(object_keypoints(Box()))
    pixels = keypoint_pixels(points, targets["translation"].double(), targets["quaternion"].double(), camera)
    translation, quaternion, error = solve_pnp(pixels, points, camera)
    assert (translation - targets["translation"]).norm(dim=-1).max() < 1e-6
    assert error.max() < 1e-6
    ignored, _, ignored_error = solve_pnp(pixels, points, camera[:, :4])
    assert (ignored - targets["translation"]).norm(dim=-1).max() > 0.01 and ignored_error.max() > 0.5


def test_a_zoom_in_model_solves_its_crop_through_the_lens_of_the_whole_image():
    """Perfect maps of a distorted image (targets drawn where the lens puts the keypoints) give the true pose when
    the camera carries its distortion: a crop keeps the lens' coefficients (normalised coordinates are the same)."""
    config = zoom_config()
    network = pose_network(config).eval()
    targets = random_poses(6)
    lens = Camera(width=256, height=256, fx=230, fy=260, cx=120, cy=136, distortion=(-0.25, 0.05, 0, 0))
    targets["camera"] = torch.as_tensor(lens.parameters, dtype=torch.float32)[None].expand(6, -1)
    outputs = perfect_outputs(config, network, targets)
    solved = network.poses(outputs, targets["camera"])
    assert (solved["translation"] - targets["translation"]).norm(dim=-1).max() < 2e-3  # metres
    angle = roma.rotmat_geodesic_distance(
        roma.unitquat_to_rotmat(solved["quaternion"]), roma.unitquat_to_rotmat(targets["quaternion"])
    )
    assert angle.max() < math.radians(0.5)
    pinhole = network.poses(outputs, targets["camera"][:, :4])
    assert (pinhole["translation"] - targets["translation"]).norm(dim=-1).max() > 2e-3


def test_calibration_files_of_ros_and_opencv_read_into_one_camera(tmp_path):
    """camera_calibration's YAML, ``rostopic echo`` of a CameraInfo and OpenCV's FileStorage (YAML and XML) give the
    same camera, their whole-number pixel centres moved by half a pixel; cubepose writes a file ROS reads back."""
    written = tmp_path / "camera_info.yaml"
    written.write_text(camera_info_yaml(WEBCAM, "webcam"))
    assert read_calibration(written) == WEBCAM
    assert "319.5" in written.read_text() and "plumb_bob" in written.read_text()

    echoed = tmp_path / "echo.yaml"
    k = [600.0, 0.0, 319.5, 0.0, 600.0, 239.5, 0.0, 0.0, 1.0]
    message = {"header": {"frame_id": "camera"}, "height": 480, "width": 640, "distortion_model": "plumb_bob"}
    echoed.write_text(json.dumps({**message, "D": list(WEBCAM.distortion[:5]), "K": k}))
    assert read_calibration(echoed) == WEBCAM

    for suffix in ("yaml", "xml"):
        path = tmp_path / f"opencv.{suffix}"
        storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
        storage.write("image_width", 640)
        storage.write("image_height", 480)
        storage.write("camera_matrix", np.array(k).reshape(3, 3))
        storage.write("distortion_coefficients", np.array(RATIONAL).reshape(1, -1))
        storage.release()
        camera = read_calibration(path)
        assert camera.values() == WEBCAM.values() and camera.distortion == RATIONAL
        assert camera.distortion_model == "rational_polynomial"

    rectified = tmp_path / "rectified.yaml"  # a RealSense colour stream: five zeros, so no distortion at all
    rectified.write_text(json.dumps({**message, "D": [0.0] * 5, "K": k}))
    assert read_calibration(rectified).distortion is None


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (
            {"K": [600, 0, 319.5, 0, 600, 239.5, 0, 0, 1], "D": [0.1, 0, 0, 0], "distortion_model": "equidistant"},
            "distortion_model 'equidistant' is not read",
        ),
        ({"K": [600, 3, 319.5, 0, 600, 239.5, 0, 0, 1]}, "no skew"),
        (
            {"K": [600, 0, 319.5, 0, 600, 239.5, 0, 0, 1], "D": [0.5, -2, 0, 0, 0], "width": 640, "height": 480},
            "folds inside the image",
        ),
        ({"K": "600 0 319.5", "D": []}, "K must be a list of numbers"),
        (
            {
                "camera_matrix": {"data": [600, 0, 319.5, 0, 600, 239.5, 0, 0, 1]},
                "distortion_model": "plumb_bob",
                "distortion_coefficients": {"data": [0.1, 0.0]},
            },
            "plumb_bob has 5 coefficients, got 2",
        ),
        ({"image": "step0.png"}, "is not a camera file"),
    ],
)
def test_a_calibration_cubepose_cannot_use_is_refused_naming_the_file_and_the_fix(tmp_path, content, named):
    path = tmp_path / "camera.yaml"
    path.write_text(json.dumps(content))
    with pytest.raises(CubeposeError) as refused:
        read_calibration(path)
    assert named in str(refused.value) and str(path) in str(refused.value)


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"#" * (2 << 20))
    with pytest.raises(CubeposeError, match="too large"):
        read_calibration(path)


def test_the_distortion_must_be_numbers_a_lens_can_have():
    with pytest.raises(CameraError, match="4, 5 or 8"):
        Camera(width=64, height=48, fx=60, fy=60, cx=32, cy=24, distortion=(0.1, 0.2, 0.0))
    with pytest.raises(CameraError, match="finite"):
        Camera(fx=60, fy=60, cx=32, cy=24, distortion=(math.nan, 0, 0, 0))


def test_an_image_rendered_through_the_lens_shows_the_box_where_the_lens_puts_it():
    """The silhouette of a box rendered through a barrel lens spans the box's distorted projection within 1.5 px
    on every side, and is several pixels off the pinhole projection's."""
    camera = Camera(width=320, height=240, fx=260, fy=260, cx=160, cy=120, distortion=(-0.3, 0.08, 0, 0))
    scene = sample_scene(np.random.default_rng(5), scene_options(camera=camera, distance=(0.45, 0.5)), 0)
    warp = LensWarp(camera)
    renderer = GLRenderer(*warp.canvas.size)
    _, canvas_mask = renderer.render(_with_camera(scene, warp.canvas), mask=True)
    renderer.release()
    mask = warp(canvas_mask.astype(np.uint8) * 255) > 127
    rows, columns = np.nonzero(mask)
    silhouette = np.array([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1], float)
    box = Box(tuple(scene.objects[0].size))
    points = torch.as_tensor(box.corners())
    pose = (torch.as_tensor(scene.objects[0].translation)[None], torch.as_tensor(scene.objects[0].quaternion)[None])
    distorted = keypoint_pixels(points, *pose, torch.as_tensor(camera.parameters)[None])[0].numpy()
    pinhole = keypoint_pixels(points, *pose, torch.as_tensor(camera.intrinsics)[None])[0].numpy()
    expected = np.concatenate([distorted.min(0), distorted.max(0)])
    assert expected.min() > 0 and expected[2] < 320 and expected[3] < 240  # the whole box in the picture
    assert np.abs(silhouette - expected).max() < 1.5
    assert np.abs(silhouette - np.concatenate([pinhole.min(0), pinhole.max(0)])).max() > 4


def _with_camera(scene, camera: Camera):
    from dataclasses import replace

    return replace(scene, camera=camera)


def test_generate_renders_through_a_calibration_file_and_writes_the_camera_beside_the_data(tmp_path):
    """``--camera-from camera_info.yaml`` renders with its lens and writes it back beside the images; the
    manifest records it, and ``--distortion`` with ``--camera`` gives the same images."""
    calibration = tmp_path / "webcam.yaml"
    small = Camera(width=160, height=120, fx=150, fy=150, cx=80, cy=60, distortion=(-0.3, 0.1, 0.0, 0.0, 0.0))
    calibration.write_text(camera_info_yaml(small))
    out = tmp_path / "from-file"
    assert main(["generate", str(out), "--count", "2", "--format", "solo", "--camera-from", str(calibration)]) == 0
    assert read_calibration(out / "camera_info.yaml") == small
    manifest = json.loads((out / ".cubepose-generate.json").read_text())
    assert manifest["scene"]["camera"]["distortion"] == list(small.distortion)
    flags = ["--camera", "160", "120", "150", "150", "80", "60", "--distortion", "-0.3", "0.1", "0", "0", "0"]
    again = tmp_path / "from-flags"
    assert main(["generate", str(again), "--count", "2", "--format", "solo", *flags]) == 0
    first, second = (sorted(folder.rglob("*.png"))[0] for folder in (out, again))
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))
    assert main(["generate", str(tmp_path / "pinhole"), "--count", "1", "--format", "solo", *flags[:7]]) == 0
    pinhole = sorted((tmp_path / "pinhole").rglob("*.png"))[0]
    assert not np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(pinhole)))
    copied = tmp_path / "copied"  # --camera-from an export made with a lens keeps the lens
    assert main(["generate", str(copied), "--count", "1", "--format", "solo", "--camera-from", str(out)]) == 0
    assert read_calibration(copied / "camera_info.yaml") == small


def test_distortion_without_a_camera_is_refused(tmp_path, caplog):
    assert main(["generate", str(tmp_path / "x"), "--count", "1", "--distortion", "-0.3", "0.1", "0", "0"]) == 2
    assert "--distortion needs the camera" in caplog.text and not (tmp_path / "x").exists()


def test_serve_and_predict_solve_through_the_lens_of_a_calibration_file(tmp_path):
    """``cubepose serve --camera camera_info.yaml`` and a request's ``distortion`` parameter give the predictor's
    pose with that lens, which differs from the pinhole one; ``cubepose predict --camera`` reads the same file."""
    checkpoint = solved_checkpoint(tmp_path, "keypoints")
    calibration = tmp_path / "camera_info.yaml"
    calibration.write_text(camera_info_yaml(WEBCAM))
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "frame.png")
    predictor = PosePredictor.load(checkpoint)
    through_lens = predictor.predict([image], camera=WEBCAM)["translation"][0]
    pinhole = predictor.predict([image], camera=WEBCAM.undistorted())["translation"][0]
    assert np.abs(through_lens - pinhole).max() > 1e-4
    url, process = start_serve(BIN / "cubepose", checkpoint, tmp_path / "serve.log", "--camera", str(calibration))
    try:
        body = (tmp_path / "frame.png").read_bytes()
        served = requests.post(f"{url}/predict", data=body, timeout=30).json()["poses"][0]["translation"]
        query = {"fx": 600, "fy": 600, "cx": 320, "cy": 240, "distortion": ",".join(map(str, WEBCAM.distortion))}
        asked = requests.post(f"{url}/predict", params=query, data=body, timeout=30).json()["poses"][0]["translation"]
        bad = requests.post(f"{url}/predict", params={"distortion": "0.1,0,0,0"}, data=body, timeout=30)
    finally:
        process.terminate()
        process.wait(timeout=30)
    np.testing.assert_allclose(served, through_lens, atol=1e-5)
    np.testing.assert_allclose(asked, through_lens, atol=1e-5)
    assert bad.status_code == 400 and "needs its camera" in bad.json()["error"]
    printed = subprocess.run(
        [BIN / "cubepose", "predict", "--checkpoint", checkpoint, "--camera", calibration, tmp_path / "frame.png"],
        capture_output=True,
        text=True,
        check=True,
    )
    np.testing.assert_allclose(json.loads(printed.stdout)["poses"][0]["translation"], through_lens, atol=1e-5)


@pytest.mark.parametrize("layout", ["legacy", "solo"])
def test_an_export_rendered_through_a_lens_is_read_with_it_and_its_targets_go_through_it(tmp_path, layout, capsys):
    """The captures record the lens, the readers put it after each camera's intrinsics, the training examples'
    camera carries it (resized), and the keypoint targets built from an example lie where the lens puts them."""
    out = tmp_path / layout
    flags = ["--camera", "96", "64", "80", "80", "48", "32", "--distortion", "-0.3", "0.08", "0", "0"]
    assert main(["generate", str(out), "--count", "3", "--format", layout, *flags]) == 0
    index = read_dataset(out)
    assert index.cameras.shape == (3, 12)
    np.testing.assert_allclose(index.cameras[:, 4:], [[-0.3, 0.08, 0, 0, 0, 0, 0, 0]] * 3)
    config = validate_config(
        {
            "network": {"type": "keypoints", "image_size": 64},
            "losses": {"keypoints": {"type": "heatmap", "weight": 1.0}},
            "data": {"train": {"root": str(out)}},
        }
    )
    example = TrainDataset(config).get_example(0)
    camera = torch.as_tensor(example["camera"], dtype=torch.float64)[None]
    assert camera.shape == (1, 12) and camera[0, 4] == pytest.approx(-0.3)
    pose = (
        torch.as_tensor(example["translation"], dtype=torch.float64)[None],
        torch.as_tensor(example["quaternion"], dtype=torch.float64)[None],
    )
    points = torch.as_tensor(object_keypoints(Box()))
    through_lens = keypoint_pixels(points, *pose, camera)
    assert (through_lens - keypoint_pixels(points, *pose, camera[:, :4])).norm(dim=-1).max() > 0.3
    assert main(["inspect", str(out)]) == 0
    assert "lens -0.3 0.08" in capsys.readouterr().out
    zoom = {"type": "zoom", "image_size": 64, "zoom": {"locate_size": 32, "crop_size": 32}}
    zoom_losses = {"keypoints": {"type": "heatmap", "weight": 1.0}, "detection": {"type": "detection", "weight": 1.0}}
    config = validate_config({"network": zoom, "losses": zoom_losses, "data": {"train": {"root": str(out)}}})
    dataset = TrainDataset(config)
    examples = [dataset.get_example(i) for i in range(3)]
    batch = {key: np.stack([e[key] for e in examples]) for key in ("image", "translation", "quaternion", "camera")}
    trainer = TrainingStep(pose_network(config), config, num_steps=1)  # a zoom-in model trains through the lens
    assert np.isfinite(trainer.train(trainer.inputs(batch["image"]), trainer.targets(batch), 0).losses["total"]).all()


def test_bop_refuses_a_lens(tmp_path, caplog):
    flags = ["--camera", "96", "64", "80", "80", "48", "32", "--distortion", "-0.3", "0.1", "0", "0"]
    assert main(["generate", str(tmp_path / "bop"), "--count", "1", "--format", "bop", *flags]) == 2
    assert "BOP's scene_camera.json records no lens" in caplog.text
