"""Prediction knows the camera: a checkpoint trained by the real edflow on 128x96 images of one camera
records it, and images from another camera are refused, in the API and the CLI, with both cameras named."""

from __future__ import annotations

import io
import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import BIN, REPO
from cubepose.errors import CubeposeError
from cubepose.geometry.camera import Camera
from cubepose.inference.export import export_model
from cubepose.inference.predictor import PosePredictor
from cubepose.synth.generate import GenerationOptions, generate_dataset, scene_options
from cubepose.training.checkpoints import save_checkpoint

WIDTH, HEIGHT = 128, 96
INTRINSICS = (110.0, 100.0, 60.0, 50.0)  # fx, fy, cx, cy in pixels of the 128x96 images: off-centre, fx != fy
SIDE = 32  # the network input
IN_NETWORK = [110 * SIDE / WIDTH, 100 * SIDE / HEIGHT, 60 * SIDE / WIDTH, 50 * SIDE / HEIGHT]


@pytest.fixture(scope="module")
def camera_data(tmp_path_factory) -> Path:
    """16 rendered 128x96 images of one camera with a known off-centre principal point."""
    root = tmp_path_factory.mktemp("camera") / "train"
    scene = scene_options(camera=Camera.from_values((WIDTH, HEIGHT, *INTRINSICS)))
    generate_dataset(root, GenerationOptions(count=16, seed=3, scene=scene, workers=1))
    return root


@pytest.fixture(scope="module")
def trained(camera_data, tmp_path_factory) -> Path:
    """model-2.ckpt of two real edflow training steps at 32 px on ``camera_data``."""
    cwd = tmp_path_factory.mktemp("run")
    configs = [str(REPO / "configs" / name) for name in ("base.yaml", "cpu.yaml")]
    overrides = ["--network/image_size", str(SIDE), "--batch_size", "8", "--test_batch_size", "8"]
    overrides += ["--n_data_processes", "1", "--log_freq", "2", "--num_steps", "2"]
    overrides += ["--data/train/root", str(camera_data), "--data/validation_fraction", "0.25"]
    result = subprocess.run(
        [str(BIN / "edflow"), "-n", "cam", "-b", *configs, "-t", *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    checkpoints = list((cwd / "logs").glob("*_cam/train/checkpoints/model-2.ckpt"))
    assert result.returncode == 0 and len(checkpoints) == 1, (result.stdout + result.stderr)[-3000:]
    return checkpoints[0]


@pytest.fixture(scope="module")
def images(camera_data) -> list[str]:
    return sorted(str(p) for p in camera_data.rglob("*.png"))[:3]


@pytest.fixture(scope="module")
def old_checkpoint(trained, tmp_path_factory) -> Path:
    """The trained checkpoint as cubepose wrote it before cameras were recorded: no ``camera`` entry."""
    state = torch.load(trained, weights_only=True)
    del state["camera"], state["format"]
    path = tmp_path_factory.mktemp("old") / "model-2.ckpt"
    save_checkpoint(path, **state)
    return path


def run_predict(checkpoint: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "cubepose"), "predict", "--checkpoint", str(checkpoint), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_checkpoint_records_the_camera_of_its_training_data(trained):
    camera = torch.load(trained, weights_only=True)["camera"]  # plain data: weights_only loads it
    np.testing.assert_allclose(camera["intrinsics"], IN_NETWORK, rtol=1e-6)
    np.testing.assert_allclose([camera["min"], camera["max"]], [IN_NETWORK, IN_NETWORK], rtol=1e-6)
    assert camera["image_size"] == SIDE and camera["spread"] < 1e-6 and camera["examples"] == 12


def test_the_training_camera_in_pixels_of_the_original_image_predicts(trained, images):
    predictor = PosePredictor.load(trained)
    unchecked = predictor.predict(images)
    checked = predictor.predict(images, camera=INTRINSICS)
    np.testing.assert_array_equal(checked["translation"], unchecked["translation"])
    larger = [Image.open(p).resize((2 * WIDTH, 2 * HEIGHT)) for p in images]  # the same camera at twice the size
    assert predictor.predict(larger, camera=[2 * v for v in INTRINSICS])["translation"].shape == (3, 3)
    near = dict(zip(("fx", "fy", "cx", "cy"), INTRINSICS, strict=True), fx=111.0, cx=60 + 0.01 * WIDTH)
    assert predictor.predict(images, camera=near)["quaternion"].shape == (3, 4)  # 0.9 % and 1 % of the side


def test_a_10_percent_longer_focal_length_is_refused_naming_both_cameras(trained, images):
    predictor = PosePredictor.load(trained)
    longer = (121.0, *INTRINSICS[1:])
    with pytest.raises(CubeposeError) as refused:
        predictor.predict(images, camera=longer)
    message = str(refused.value)
    assert message.startswith(f"{images[0]}: its camera is not the one the model was trained for")
    for part in ("given fx 121, fy 100, cx 60, cy 50 for 128x96 px", "fx 110, fy 100, cx 60, cy 50 at 128x96 px"):
        assert part in message
    assert "fx 27.5, fy 33.33, cx 15, cy 16.67 in its 32 px input" in message and "fx differs by 10.0%" in message
    assert "cubepose generate --camera 128 96 121 100 60 50" in message
    shifted = (*INTRINSICS[:2], 60 + 0.03 * WIDTH, 50.0)
    parts = list(predictor.predict_items(images, keep_going=True, camera=shifted))
    assert not parts[0]["valid"].any() and np.isnan(parts[0]["translation"]).all()
    assert all("cx is off by 3.0% of the side" in error for error in parts[0]["error"])


def test_an_integration_that_decodes_its_own_input_is_checked_too(trained, images):
    class EncodedImagePredictor(PosePredictor):
        def prepare_item(self, item: bytes) -> np.ndarray:
            return super().prepare_item(Image.open(io.BytesIO(item)))

    predictor = EncodedImagePredictor.load(trained)
    encoded = [Path(p).read_bytes() for p in images]
    assert predictor.predict(encoded, camera=INTRINSICS)["translation"].shape == (3, 3)
    with pytest.raises(CubeposeError, match="image 0: its camera is not the one"):
        predictor.predict(encoded, camera=(110.0, 120.0, 60.0, 50.0))


def test_cli_intrinsics_of_another_camera_give_one_error_line_per_image_and_exit_2(trained, images):
    result = run_predict(trained, "--intrinsics", "121", "100", "60", "50", *images)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == images and all("fx differs by 10.0%" in r["error"] for r in records)
    assert "training camera fx 27.5, fy 33.33, cx 15, cy 16.67 in its 32 px input" in result.stderr
    assert "3 of 3 images failed" in result.stderr


def test_cli_camera_file_in_yaml_or_json(trained, images, tmp_path):
    fx, fy, cx, cy = INTRINSICS
    (tmp_path / "camera.yaml").write_text(f"fx: {fx}\nfy: {fy}\ncx: {cx}\ncy: {cy}\nwidth: 128\nheight: 96\n")
    result = run_predict(trained, "--camera", str(tmp_path / "camera.yaml"), *images)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = PosePredictor.load(trained).predict(images)
    np.testing.assert_allclose(
        [json.loads(line)["poses"][0]["translation"] for line in result.stdout.splitlines()],
        expected["translation"],
        atol=1e-6,
    )
    (tmp_path / "camera.json").write_text(
        json.dumps({"fx": fx, "fy": fy, "cx": cx, "cy": cy, "width": 64, "height": 48})
    )
    wrong_size = run_predict(trained, "--camera", str(tmp_path / "camera.json"), images[0])
    assert wrong_size.returncode == 2
    assert "is 128x96 px but the camera was given for 64x48 px images" in json.loads(wrong_size.stdout)["error"]
    (tmp_path / "frame_data.json").write_text(json.dumps({"frame": 0, "captures": [{"matrix": [1, 0, 0]}]}))
    solo = run_predict(trained, "--camera", str(tmp_path / "frame_data.json"), images[0])
    assert solo.returncode == 2 and not solo.stdout and "Traceback" not in solo.stderr
    assert f"{tmp_path / 'frame_data.json'} is not a camera file" in solo.stderr


def test_an_old_checkpoint_without_a_camera_warns_and_predicts(old_checkpoint, images, caplog):
    with caplog.at_level(logging.WARNING, logger="cubepose.inference.predictor"):
        predictor = PosePredictor.load(old_checkpoint)
    assert predictor.training_camera is None
    warned = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith(f"{old_checkpoint} records no training camera") for m in warned), warned
    poses = predictor.predict(images, camera=(121.0, 100.0, 60.0, 50.0))  # nothing to check against
    assert np.isfinite(poses["translation"]).all()


def test_the_camera_survives_save_and_goes_into_the_export_contract(trained, tmp_path):
    predictor = PosePredictor.load(trained)
    predictor.save(tmp_path / "saved.ckpt")
    assert PosePredictor.load(tmp_path / "saved.ckpt").training_camera == predictor.training_camera
    out = export_model(predictor, tmp_path / "cube.pt", "torchscript")
    contract = json.loads(out.with_name("cube.pt.json").read_text())
    np.testing.assert_allclose(contract["camera"]["intrinsics"], IN_NETWORK, rtol=1e-6)
    assert contract["camera"]["units"].startswith("fx, fy, cx, cy in pixels of the 32x32 input")
