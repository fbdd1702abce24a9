"""PosePredictor, `cubepose predict` and `cubepose export` on real PNGs and real checkpoint files."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from conftest import BIN, load_configs
from cubepose.config import validate_config
from cubepose.data import ValidationDataset
from cubepose.data.images import to_network_range
from cubepose.errors import CubeposeError
from cubepose.inference.predictor import PosePredictor
from cubepose.models import PoseNet
from cubepose.training.checkpoints import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A cpu.yaml model at 32 px whose recorded config names a pretrained file this machine lacks."""
    config = validate_config(load_configs("base.yaml", "cpu.yaml"))
    config["network"]["image_size"] = 32
    config["seed"] = 4
    model = PoseNet(config)
    config["network"]["pretrained"] = "/training/machine/only/backbone.pth"
    path = tmp_path_factory.mktemp("ckpt") / "model-12.ckpt"
    save_checkpoint(path, model=model.state_dict(), global_step=12, config=config)
    return path


@pytest.fixture(scope="module")
def checkpoint_negative_w(tmp_path_factory) -> Path:
    """A quaternion-regressing model whose raw output has w < 0 for every image (a large negative bias)."""
    config = validate_config(load_configs("base.yaml", "cpu.yaml"))
    config["network"]["image_size"] = 32
    model = PoseNet(config)
    with torch.no_grad():
        model.head.branches["quaternion"][4].bias[3] = -100.0
    path = tmp_path_factory.mktemp("ckptneg") / "model-5.ckpt"
    save_checkpoint(path, model=model.state_dict(), global_step=5, config=config)
    return path


@pytest.fixture(scope="module")
def checkpoint_6d(tmp_path_factory) -> Path:
    """The same model regressing the 6D rotation representation."""
    config = validate_config(load_configs("base.yaml", "cpu.yaml"))
    config["network"].update(image_size=32, rotation="6d")
    path = tmp_path_factory.mktemp("ckpt6d") / "model-3.ckpt"
    save_checkpoint(path, model=PoseNet(config).state_dict(), global_step=3, config=config)
    return path


@pytest.fixture(scope="module")
def checkpoint_crop(tmp_path_factory) -> Path:
    """A two-stage model (network/crop): locate, crop with grid_sample, orient along the viewing ray."""
    config = load_configs("base.yaml", "cpu.yaml")
    config["network"].update(image_size=32, rotation="6d", crop={"active": True, "locate_size": 32, "size": 32})
    config["losses"]["window"] = {"type": "mse", "weight": 1.0}
    config = validate_config(config)
    path = tmp_path_factory.mktemp("ckptcrop") / "model-3.ckpt"
    save_checkpoint(path, model=PoseNet(config).state_dict(), global_step=3, config=config)
    return path


@pytest.fixture(scope="module")
def images(tiny_data) -> list[str]:
    return sorted(str(p) for p in tiny_data["test"].rglob("*.png"))[:7]


def test_inputs_are_prepared_exactly_as_the_training_data(checkpoint, tiny_config):
    predictor = PosePredictor.load(checkpoint)
    tiny_config["network"]["image_size"] = 32
    dataset = ValidationDataset(validate_config(tiny_config))
    for index in (0, 5):
        example = dataset[index]
        prepared = predictor.prepare_item(dataset.labels["image_path"][index])
        np.testing.assert_array_equal(np.asarray(prepared), example["image"])  # both uint8, pixel for pixel


def test_paths_arrays_and_pil_images_of_any_size_give_the_same_poses(checkpoint, images):
    predictor = PosePredictor.load(checkpoint)
    from_paths = predictor.predict(images)
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in images]
    np.testing.assert_allclose(predictor.predict(arrays)["translation"], from_paths["translation"], atol=1e-6)
    pil = [Image.open(p) for p in images]
    np.testing.assert_allclose(predictor.predict(pil)["quaternion"], from_paths["quaternion"], atol=1e-6)
    assert from_paths["translation"].shape == (7, 3) and from_paths["quaternion"].shape == (7, 4)
    np.testing.assert_allclose(np.linalg.norm(from_paths["quaternion"], axis=1), 1.0, rtol=1e-5)
    assert np.all(from_paths["quaternion"][:, 3] >= 0)
    wide = np.asarray(Image.open(images[0]).convert("RGBA").resize((160, 90)))
    assert predictor.predict([wide, np.asarray(Image.open(images[0]).convert("L"))])["translation"].shape == (2, 3)


def test_batches_of_the_configured_size_match_one_big_batch(checkpoint, images):
    small = PosePredictor.load(checkpoint, batch_size=3)
    parts = list(small.predict_items(images))
    assert [len(p["translation"]) for p in parts] == [3, 3, 1]
    whole = PosePredictor.load(checkpoint, batch_size=64).predict(images)
    np.testing.assert_allclose(np.concatenate([p["translation"] for p in parts]), whole["translation"], atol=1e-6)


def test_bad_images_name_the_input_and_the_fix(checkpoint, tmp_path):
    predictor = PosePredictor.load(checkpoint)
    (tmp_path / "notes.png").write_text("not an image")
    cases = [
        (np.zeros((32, 32, 3), np.float32), "must be uint8 of shape HxW, HxWx3"),
        (str(tmp_path / "missing.png"), f"no image at {tmp_path / 'missing.png'}"),
        (str(tmp_path / "notes.png"), f"cannot read image {tmp_path / 'notes.png'}"),
        (b"bytes", "cannot predict a bytes; give a path, a numpy array or a PIL image"),
    ]
    for item, message in cases:
        with pytest.raises(CubeposeError, match=message.replace("(", r"\(")):
            predictor.predict([item])
    with pytest.raises(CubeposeError, match="no images to predict"):
        predictor.predict([])


class EncodedImagePredictor(PosePredictor):
    """What a platform integration looks like: its own input type, one hook."""

    def prepare_item(self, item: bytes) -> np.ndarray:
        return super().prepare_item(Image.open(io.BytesIO(item)))


def test_an_integration_is_a_thin_subclass_and_save_load_round_trips(checkpoint, images, tmp_path):
    base = PosePredictor.load(checkpoint)
    encoded = [Path(p).read_bytes() for p in images]
    adapted = EncodedImagePredictor.load(checkpoint)
    np.testing.assert_allclose(adapted.predict(encoded)["translation"], base.predict(images)["translation"], atol=1e-6)
    adapted.save(tmp_path / "saved.ckpt")
    again = PosePredictor.load(tmp_path / "saved.ckpt")
    assert again.global_step == 12
    np.testing.assert_array_equal(again.predict(images)["quaternion"], base.predict(images)["quaternion"])


def test_a_remote_checkpoint_is_pinned(checkpoint, images, file_server, tmp_path):
    (file_server.folder / "model-12.ckpt").write_bytes(checkpoint.read_bytes())
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    remote = PosePredictor.load(f"{file_server.url}/model-12.ckpt", sha256=digest, cache_dir=tmp_path)
    np.testing.assert_array_equal(
        remote.predict(images)["translation"], PosePredictor.load(checkpoint).predict(images)["translation"]
    )


def test_cli_predict_prints_one_json_object_per_image(checkpoint, images):
    result = subprocess.run(
        [str(BIN / "cubepose"), "predict", "--checkpoint", str(checkpoint), "--batch-size", "4", *images],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == images
    expected = PosePredictor.load(checkpoint).predict(images)
    assert all(len(r["poses"]) == 1 for r in records)  # a single-instance model: a list of one
    np.testing.assert_allclose([r["poses"][0]["translation"] for r in records], expected["translation"], atol=1e-6)
    np.testing.assert_allclose([r["poses"][0]["quaternion"] for r in records], expected["quaternion"], atol=1e-6)
    bad = subprocess.run(
        [str(BIN / "cubepose"), "predict", "--checkpoint", str(checkpoint), "missing.png"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "no image at missing.png" in bad.stderr


@pytest.mark.parametrize(
    "fmt, model",
    [
        ("torchscript", "checkpoint"),
        ("onnx", "checkpoint"),
        ("torchscript", "checkpoint_negative_w"),
        ("onnx", "checkpoint_negative_w"),
        ("torchscript", "checkpoint_6d"),
        ("onnx", "checkpoint_6d"),
        ("torchscript", "checkpoint_crop"),
        ("onnx", "checkpoint_crop"),
    ],
)
def test_exported_models_match_pytorch_within_1e_5(request, images, tmp_path, fmt, model):
    checkpoint = request.getfixturevalue(model)
    out = tmp_path / f"cube.{'pt' if fmt == 'torchscript' else 'onnx'}"
    result = subprocess.run(
        [str(BIN / "cubepose"), "export", "--checkpoint", str(checkpoint), "--format", fmt, str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    contract = json.loads(out.with_name(out.name + ".json").read_text())
    assert contract["input"]["shape"] == ["N", 3, 32, 32] and list(contract["outputs"]) == ["translation", "quaternion"]
    predictor = PosePredictor.load(checkpoint)
    prepared = np.stack([predictor.prepare_item(p) for p in images])  # 7 images: the batch axis is free
    batch = np.ascontiguousarray(to_network_range(prepared).transpose(0, 3, 1, 2))
    with torch.no_grad():
        expected = predictor.model(torch.from_numpy(batch))
        if fmt == "torchscript":
            translation, quaternion = (t.numpy() for t in torch.jit.load(str(out))(torch.from_numpy(batch)))
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        translation, quaternion = session.run(["translation", "quaternion"], {"images": batch})
    np.testing.assert_allclose(translation, expected["translation"].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(quaternion, expected["quaternion"].numpy(), atol=1e-5, rtol=0)
    assert (quaternion[:, 3] >= 0).all()  # the canonical sign is part of the exported graph


def test_the_model_returns_w_at_least_0_outside_training_and_the_raw_sign_while_training(checkpoint_negative_w):
    predictor = PosePredictor.load(checkpoint_negative_w)
    images = torch.zeros(2, 3, 32, 32)
    with torch.no_grad():
        evaluated = predictor.model.eval()(images)["quaternion"]
        trained = predictor.model.train()(images)["quaternion"]
    assert (evaluated[:, 3] > 0).all() and (trained[:, 3] < 0).all()  # Unity's mse loss still sees -q
    torch.testing.assert_close(evaluated, -trained)
