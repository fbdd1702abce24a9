"""Prediction with hostile and broken input: NaN models, unreadable images among good ones, a GPU
this machine lacks, checkpoints with flipped bytes. Real checkpoints, real PNGs, the real CLI."""

from __future__ import annotations

import json
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from image_headers import sixteen_bit_png
from PIL import Image
from serve_fixtures import SOLVED_NETWORKS, nan_checkpoint

from conftest import BIN, load_configs
from cubepose.config import validate_config
from cubepose.data.images import decode_resized
from cubepose.errors import CheckpointError, ConfigError, CubeposeError
from cubepose.inference.predictor import PosePredictor
from cubepose.models import PoseNet
from cubepose.training.checkpoints import read_checkpoint, save_checkpoint

IDENTITY = [0.0, 0.0, 0.0, 1.0]


def tiny_config(rotation: str = "quaternion") -> dict:
    """cpu.yaml's model at 32 px: small enough to build and run in milliseconds."""
    config = validate_config(load_configs("base.yaml", "cpu.yaml"))
    config["network"].update(image_size=32, rotation=rotation)
    return config


def write_checkpoint(path: Path, config: dict, poison: dict[str, float] | None = None) -> Path:
    """A cubepose checkpoint of a fresh model, with the state-dict entries whose name contains a
    key of ``poison`` filled with its value (NaN or inf): what a diverged training run saves."""
    state = PoseNet(config).state_dict()
    for fragment, value in (poison or {}).items():
        hit = [name for name in state if fragment in name and state[name].is_floating_point()]
        assert hit, f"no weight named like {fragment}: {list(state)}"
        for name in hit:
            state[name] = torch.full_like(state[name], value)
    save_checkpoint(path, model=state, global_step=5, config=config)
    return path


def last_layer(output: str) -> str:
    """State-dict prefix of the final Linear of the head's ``output`` branch (its raw values)."""
    return f"head.branches.{output}.4."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("good") / "model-5.ckpt", tiny_config())


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> list[str]:
    """Four real PNG files of random pixels in other sizes than the network's."""
    folder = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(4):
        path = folder / f"frame{index}.png"
        Image.fromarray(rng.integers(0, 256, (30 + index, 40, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def run_predict(checkpoint: Path, images: list[str], *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "cubepose"), "predict", "--checkpoint", str(checkpoint), *options, *images],
        capture_output=True,
        text=True,
        timeout=120,
    )


def strict_json_lines(stdout: str) -> list[dict]:
    """Each line parsed as standard JSON: NaN, Infinity and -Infinity are not JSON and fail here."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the output is not valid JSON")

    return [json.loads(line, parse_constant=refuse) for line in stdout.splitlines()]


# -- non-finite models ---------------------------------------------------------------------


def test_a_nan_model_prints_valid_json_error_records_and_fails(tmp_path, pngs):
    nan_model = write_checkpoint(tmp_path / "model-5.ckpt", tiny_config(), {"backbone.": float("nan")})
    result = run_predict(nan_model, pngs[:3], "--batch-size", "2")
    records = strict_json_lines(result.stdout)
    assert [r["image"] for r in records] == pngs[:3]
    for record in records:
        assert "poses" not in record and "not finite (NaN or inf)" in record["error"]
        assert "use an earlier checkpoint" in record["error"]
    assert result.returncode != 0
    assert "3 of 3 images failed" in result.stderr and all(p in result.stderr for p in pngs[:3])


@pytest.mark.parametrize("network", list(SOLVED_NETWORKS))
def test_a_nan_model_that_solves_pnp_prints_one_error_line_per_image_not_a_traceback(tmp_path, pngs, network):
    camera = ("--intrinsics", "40", "40", "20", "15")  # the checkpoint records no training camera
    result = run_predict(nan_checkpoint(tmp_path, network), pngs[:3], "--batch-size", "2", *camera)
    records = strict_json_lines(result.stdout)
    assert [r["image"] for r in records] == pngs[:3]
    assert all("poses" not in r and "not finite (NaN or inf)" in r["error"] for r in records)
    assert result.returncode != 0 and "Traceback" not in result.stderr and "3 of 3 images failed" in result.stderr


@pytest.mark.parametrize("rotation", ["quaternion", "6d"])
def test_a_nan_raw_rotation_is_not_passed_off_as_the_identity(tmp_path, pngs, rotation):
    """Only the rotation branch is broken: the translation is finite, and normalising the NaN
    quaternion would give (0, 0, 0, 1), a pose that looks healthy."""
    path = write_checkpoint(tmp_path / "model-5.ckpt", tiny_config(rotation), {last_layer("quaternion"): float("nan")})
    predictor = PosePredictor.load(path)
    with pytest.raises(CubeposeError, match=f"no pose for 2 of 2 images \\({pngs[0]}, {pngs[1]}\\)"):
        predictor.predict(pngs[:2])
    (part,) = predictor.predict_items(pngs[:2], keep_going=True)
    assert not part["valid"].any() and np.isnan(part["quaternion"]).all() and np.isnan(part["translation"]).all()
    result = run_predict(path, pngs[:2])
    records = strict_json_lines(result.stdout)
    assert all("error" in r and r.get("quaternion") != IDENTITY for r in records) and result.returncode != 0


def test_an_infinite_translation_is_an_error_too(tmp_path, pngs):
    path = write_checkpoint(tmp_path / "model-5.ckpt", tiny_config(), {last_layer("translation") + "bias": np.inf})
    with pytest.raises(CubeposeError, match="not finite"):
        PosePredictor.load(path).predict(pngs[:1])
    assert "error" in strict_json_lines(run_predict(path, pngs[:1]).stdout)[0]


# -- bad images among good ones ------------------------------------------------------------


class BatchRecorder(PosePredictor):
    """Records the size of every forward pass, to show that readable images stay batched."""

    def predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.batches = [*getattr(self, "batches", []), len(batch)]
        return super().predict_batch(batch)


@pytest.fixture
def mixed(tmp_path, pngs) -> tuple[list[str], list[int]]:
    """Good PNGs around a missing file, a file that is not an image and a PNG cut in half; with the
    positions of the bad ones."""
    (tmp_path / "notes.png").write_text("not an image")
    cut = Path(pngs[0]).read_bytes()
    (tmp_path / "cut.png").write_bytes(cut[: len(cut) // 2])
    images = [pngs[0], str(tmp_path / "missing.png"), pngs[1], str(tmp_path / "notes.png"), pngs[2]]
    images += [str(tmp_path / "cut.png"), pngs[3]]
    return images, [1, 3, 5]


def test_cli_reports_each_bad_image_and_predicts_the_rest_in_order(checkpoint, mixed):
    images, bad = mixed
    result = run_predict(checkpoint, images, "--batch-size", "2")
    records = strict_json_lines(result.stdout)
    assert [r["image"] for r in records] == images
    assert [i for i, r in enumerate(records) if "error" in r] == bad
    assert records[1]["error"].startswith(f"no image at {images[1]}")
    assert records[3]["error"].startswith(f"cannot read image {images[3]}")
    assert records[5]["error"].startswith(f"cannot read image {images[5]}")
    good = [images[i] for i in range(len(images)) if i not in bad]
    expected = PosePredictor.load(checkpoint).predict(good)
    poses = [r for r in records if "error" not in r]
    np.testing.assert_allclose([r["poses"][0]["translation"] for r in poses], expected["translation"], atol=1e-6)
    np.testing.assert_allclose([r["poses"][0]["quaternion"] for r in poses], expected["quaternion"], atol=1e-6)
    assert result.returncode != 0 and "3 of 7 images failed" in result.stderr
    assert all(images[i] in result.stderr for i in bad)


def test_keep_going_batches_the_readable_images_and_marks_the_rest(checkpoint, mixed):
    images, bad = mixed
    predictor = BatchRecorder.load(checkpoint, batch_size=2)
    parts = list(predictor.predict_items(images, keep_going=True))
    assert predictor.batches == [2, 2]  # four readable images, two forward passes
    valid = np.concatenate([p["valid"] for p in parts])
    errors = [e for p in parts for e in p["error"]]
    assert [i for i, ok in enumerate(valid) if not ok] == bad == [i for i, e in enumerate(errors) if e]
    translation = np.concatenate([p["translation"] for p in parts])
    assert np.isnan(translation[bad]).all() and np.isfinite(np.delete(translation, bad, axis=0)).all()
    with pytest.raises(CubeposeError, match="no image at"):  # without keep_going: the first bad image stops
        list(predictor.predict_items(images))


def test_only_bad_images_still_give_error_records(checkpoint, mixed):
    images, bad = mixed
    (part,) = PosePredictor.load(checkpoint).predict_items([images[i] for i in bad], keep_going=True)
    assert part["translation"].shape == (3, 3) and part["quaternion"].shape == (3, 4) and not part["valid"].any()
    result = run_predict(checkpoint, [images[i] for i in bad])
    assert all("error" in r for r in strict_json_lines(result.stdout)) and result.returncode != 0


# -- devices -------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine_names_the_device_not_the_checkpoint(checkpoint, pngs):
    result = run_predict(checkpoint, pngs[:1], "--device", "cuda")
    assert result.returncode != 0 and result.stdout == ""
    assert "no CUDA device is available" in result.stderr and "use --device cpu" in result.stderr
    assert "checkpoint" not in result.stderr
    with pytest.raises(ConfigError, match="no CUDA device is available"):
        PosePredictor.load(checkpoint, device="cuda:0")


def test_an_unknown_device_name_lists_the_valid_ones(checkpoint, pngs):
    result = run_predict(checkpoint, pngs[:1], "--device", "gpu")
    assert result.returncode != 0 and "unknown device 'gpu'; use cpu, cuda" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(strict_json_lines(run_predict(checkpoint, pngs[:1], "--device", "auto").stdout)) == 1


# -- damaged checkpoints -------------------------------------------------------------------


def flip_bytes_inside_a_tensor(path: Path) -> str:
    """Invert 8 bytes in the middle of the largest tensor's data, leaving the zip structure (and
    its recorded CRC-32s) as saved; returns the member's name."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length + info.file_size // 2
    data[start : start + 8] = bytes(b ^ 0xFF for b in data[start : start + 8])
    path.write_bytes(bytes(data))
    return info.filename


def test_a_checkpoint_with_flipped_bytes_is_refused_naming_the_file(tmp_path, pngs):
    path = write_checkpoint(tmp_path / "model-5.ckpt", tiny_config())
    before = torch.load(path, weights_only=True)["model"]
    member = flip_bytes_inside_a_tensor(path)
    after = torch.load(path, weights_only=True)["model"]  # torch itself loads the damage silently
    assert zipfile.is_zipfile(path) and any(not torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(CheckpointError, match=f"{path} is damaged: Bad CRC-32 for file '{member}'"):
        read_checkpoint(path)
    result = run_predict(path, pngs[:1])
    assert result.returncode != 0 and result.stdout == ""
    assert f"{path} is damaged" in result.stderr and "use an earlier checkpoint" in result.stderr


def test_a_checkpoint_saved_without_checksums_still_loads(tmp_path, pngs):
    torch.serialization.set_crc32_options(False)
    try:
        path = write_checkpoint(tmp_path / "model-5.ckpt", tiny_config())
    finally:
        torch.serialization.set_crc32_options(True)
    with zipfile.ZipFile(path) as archive:
        assert all(info.CRC == 0 for info in archive.infolist())
    assert PosePredictor.load(path).predict(pngs[:1])["translation"].shape == (1, 3)


# -- pixels PIL misreads ------------------------------------------------------------------------


def test_a_16_bit_png_is_scaled_to_8_bits_for_prediction_and_datasets(tmp_path, checkpoint):
    encoded, shown = sixteen_bit_png()
    path = tmp_path / "depth-like.png"
    path.write_bytes(encoded)
    assert Image.open(path).mode == "I;16"  # what PIL's convert("RGB") turns all white above 255
    predictor = PosePredictor.load(checkpoint)
    from_file, from_pixels = predictor.predict([str(path)]), predictor.predict([shown])
    np.testing.assert_allclose(from_file["translation"], from_pixels["translation"], atol=1e-6)
    decoded = decode_resized(str(path), 48)
    assert decoded.dtype == np.uint8 and 100 < decoded.mean() < 155  # a ramp over the range: mid-grey on average


# -- checkpoints whose contents do not fit ------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (lambda: PoseNet(tiny_config("6d")).state_dict(), "does not fit the network its own config describes"),
        (lambda: [1, 2, 3], "holds no model weights (its 'model' entry is a list)"),
    ],
)
def test_a_checkpoint_whose_weights_do_not_fit_its_config_is_named_without_a_traceback(tmp_path, pngs, model, named):
    path = tmp_path / "model-5.ckpt"
    save_checkpoint(path, model=model(), global_step=5, config=tiny_config("quaternion"))
    result = run_predict(path, pngs[:1])
    assert result.returncode == 2 and named in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr
