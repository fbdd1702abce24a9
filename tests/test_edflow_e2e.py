"""End to end through the real `edflow` command: train, evaluate, resume, bad keys."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from edflow.data.believers.meta import MetaDataset
from PIL import Image
from tensorboard_events import summary_values

from conftest import BIN, REPO
from cubepose.evaluation.metrics import pose_dataset_metrics, translation_error, unity_dataset_metrics
from cubepose.evaluation.overlay import PREDICTED_COLOUR, TRUE_COLOUR

CONFIGS = [str(REPO / "configs" / "base.yaml"), str(REPO / "configs" / "cpu.yaml")]


def edflow(args: list[str], cwd: Path, data: dict[str, Path], batch_size: int = 8) -> subprocess.CompletedProcess:
    """Run the real edflow CLI on the tiny data with a tiny network."""
    overrides = ["--network/image_size", "32", "--batch_size", str(batch_size)]
    overrides += ["--n_data_processes", "1", "--log_freq", "2", "--test_batch_size", "8"]
    for split, root in data.items():
        overrides += [f"--data/{split}/root", str(root)]
    result = subprocess.run(
        [str(BIN / "edflow"), *args, *overrides], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    return result


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _eval_dirs(run: Path) -> list[Path]:
    """eval/<timestamp>/<step>/ folders, oldest first."""
    return sorted(run.glob("eval/*/*/model_outputs"), key=lambda p: p.stat().st_mtime)


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> Path:
    """One training run of 6 steps (one epoch of 48 images) with orientation weight 2."""
    work = tmp_path_factory.mktemp("work")
    _ok(
        edflow(
            ["-n", "e2e", "-b", *CONFIGS, "-t", "--num_steps", "6", "--losses/orientation/weight", "2"], work, tiny_data
        )
    )
    (run,) = (work / "logs").glob("*_e2e")
    return run


def test_training_writes_checkpoint_per_instance_outputs_and_metrics(trained):
    checkpoint = trained / "train" / "checkpoints" / "model-6.ckpt"
    state = torch.load(checkpoint, weights_only=True)
    assert state["config"]["losses"]["orientation"]["weight"] == 2.0
    # run from a folder without the repository: the code that ran is copied from the installed package
    assert not (trained.parent.parent / "cubepose").exists()
    assert (trained / "code" / "cubepose" / "iterator.py").is_file()
    assert (trained / "code" / "cubepose" / "data" / "legacy.py").is_file()
    assert not list((trained / "code").rglob("__pycache__"))

    (outputs,) = _eval_dirs(trained)
    labels = MetaDataset(str(outputs)).labels
    assert labels["translation_pred"].shape == (16, 3) and labels["quaternion_pred"].shape == (16, 4)
    assert labels["loss_total"].shape == (16,)
    np.testing.assert_allclose(np.linalg.norm(labels["quaternion_pred"], axis=1), 1.0, rtol=1e-5)

    metrics = json.loads((outputs.parent / "metrics.json").read_text())
    assert metrics["instances"] == 16
    assert all(math.isfinite(metrics[k]) for k in ("translation_mse", "orientation_error"))
    expected = unity_dataset_metrics(
        labels["translation_pred"], labels["translation_true"], labels["quaternion_pred"], labels["quaternion_true"]
    )
    assert metrics["translation_mse"] == pytest.approx(expected["translation_mse"], rel=1e-6)
    assert metrics["orientation_error"] == pytest.approx(expected["orientation_error"], rel=1e-6)
    standard = pose_dataset_metrics(
        labels["translation_pred"], labels["translation_true"], labels["quaternion_pred"], labels["quaternion_true"]
    )
    assert {k: metrics[k] for k in standard} == pytest.approx(standard, rel=1e-6)
    assert {"add_cm_median", "rotation_error_deg_p90", "accuracy_5cm_5deg"} <= set(metrics)

    with open(outputs.parent / "errors.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 and rows[0]["image_path"].endswith(".png")
    np.testing.assert_allclose(
        [float(r["translation_error_cm"]) for r in rows],
        100 * translation_error(labels["translation_pred"], labels["translation_true"]),
        rtol=1e-5,
    )


def test_orientation_weight_from_the_command_line_changes_the_total(trained):
    labels = MetaDataset(str(_eval_dirs(trained)[0])).labels
    translation, orientation = labels["loss_translation"], labels["loss_orientation"]
    translation_weight = 100.0  # configs/cpu.yaml
    assert np.all(orientation > 0)
    np.testing.assert_allclose(labels["loss_total"], translation_weight * translation + 2.0 * orientation, rtol=1e-5)
    assert not np.allclose(labels["loss_total"], translation_weight * translation + orientation, rtol=1e-3)


def _tensorboard_images(run: Path) -> dict[str, np.ndarray]:
    """The last image of each tag in a run's event files."""
    return {
        value.tag: np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string)))
        for value in summary_values(run)
        if value.HasField("image")
    }


def test_training_logs_scalars_images_and_tensorboard_events(trained):
    assert list((trained / "train" / "train" / "log_op").glob("inputs_*.png"))
    assert list(trained.glob("events.out.tfevents.*"))
    images = _tensorboard_images(trained)
    poses = images["train/log_op/poses"]  # 8 inputs of 32 px enlarged 4x, in edflow's grid
    assert poses.shape[0] == 4 * 32 * 3 and poses.shape[1] == 4 * 32 * 3  # 3 x 3 grid

    def painted(colour):  # edflow truncates [-1, 1] -> uint8, so a colour may come back 1 lower
        return np.all(np.abs(poses[..., :3].astype(int) - colour) <= 1, axis=-1).sum()

    assert painted(TRUE_COLOUR) > 100 and painted(PREDICTED_COLOUR) > 100  # both cubes are drawn
    assert list((trained / "train" / "train" / "log_op").glob("poses_*.png"))
    log = (trained / "train" / "log.txt").read_text() if (trained / "train" / "log.txt").exists() else ""
    assert "loss_total" in log and "orientation_error" in log


def own_copy(run: Path, tmp_path: Path) -> Path:
    """A copy of the shared run for a test that adds to it (evaluations, checkpoints): tests stay order-free."""
    return Path(shutil.copytree(run, tmp_path / "logs" / run.name))


def test_evaluation_without_t_uses_the_latest_checkpoint(trained, tiny_data, tmp_path):
    trained = own_copy(trained, tmp_path)
    before = _eval_dirs(trained)
    _ok(edflow(["-b", *CONFIGS, "-p", str(trained)], tmp_path, tiny_data))
    new = [d for d in _eval_dirs(trained) if d not in before]
    assert len(new) == 1 and new[0].parent.name == "6"  # evaluated checkpoint model-6
    assert (new[0].parent / "metrics.json").exists()
    assert list(new[0].parent.glob("events.out.tfevents.*"))  # the metrics also go to TensorBoard
    fresh, trained_outputs = MetaDataset(str(new[0])).labels, MetaDataset(str(before[0])).labels
    np.testing.assert_allclose(fresh["translation_pred"], trained_outputs["translation_pred"], atol=1e-5)


def test_test_overlay_evaluates_the_test_split(trained, tiny_data, tmp_path):
    trained = own_copy(trained, tmp_path)
    before = _eval_dirs(trained)
    _ok(edflow(["-b", *CONFIGS, str(REPO / "configs" / "test.yaml"), "-p", str(trained)], tmp_path, tiny_data))
    (new,) = [d for d in _eval_dirs(trained) if d not in before]
    assert MetaDataset(str(new)).labels["translation_pred"].shape == (12, 3)  # the 12 test images


def test_resume_continues_step_and_optimizer_state(trained, tiny_data, tmp_path):
    trained = own_copy(trained, tmp_path)
    _ok(edflow(["-b", *CONFIGS, "-p", str(trained), "-t", "--num_steps", "12"], tmp_path, tiny_data))
    state = torch.load(trained / "train" / "checkpoints" / "model-12.ckpt", weights_only=True)
    adam_steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {12.0}  # 6 restored + 6 new optimizer steps (accumulation_steps: 1)
    assert state["scheduler"]["last_epoch"] == 12  # the learning-rate schedule continues too


def test_misspelt_key_stops_the_run_at_start_naming_it(tiny_data, tmp_path):
    result = edflow(["-n", "typo", "-b", *CONFIGS, "-t", "--network/backbon", "vgg16"], tmp_path, tiny_data)
    assert result.returncode != 0
    assert "unknown key 'network/backbon'; did you mean 'network/backbone'?" in result.stderr
    assert not list(tmp_path.glob("logs/*/train/checkpoints/*.ckpt"))


def test_edeval_reproduces_metrics_json_from_saved_outputs(trained, tmp_path):
    trained = own_copy(trained, tmp_path)
    outputs = _eval_dirs(trained)[0]
    metrics_file = outputs.parent / "metrics.json"
    expected = json.loads(metrics_file.read_text())
    metrics_file.unlink()
    result = subprocess.run(
        [
            str(BIN / "edeval"),
            "-m",
            str(outputs),
            "-c",
            "unity_metrics:cubepose.evaluation.unity_metrics",
            "pose_metrics:cubepose.evaluation.pose_metrics",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(metrics_file.read_text()) == expected


def test_evaluation_writes_a_report_with_overlays_and_the_cli_rebuilds_it(trained, tmp_path):
    trained = own_copy(trained, tmp_path)
    folder = _eval_dirs(trained)[0].parent
    page = (folder / "report.html").read_text()
    assert page.count("<figure>") == 16  # 8 worst + 8 median of the 16 validation images
    assert "translation_error_cm_median" in page and page.count("data:image/png;base64,") >= 18  # + plots
    shown = subprocess.run([str(BIN / "cubepose"), "metrics", str(folder)], capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout.splitlines()[-1] == f"report: {folder / 'report.html'}"
    assert "accuracy_5cm_5deg" in shown.stdout and shown.stdout.splitlines()[1].startswith("  16 of 16 poses given;")
    (folder / "report.html").unlink()
    result = subprocess.run([str(BIN / "cubepose"), "report", str(folder)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(folder / "report.html")
    assert (folder / "report.html").read_text().count("<figure>") == 16
    missing = subprocess.run([str(BIN / "cubepose"), "report", str(tmp_path / "logs")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no model_outputs in" in missing.stderr


def test_report_draws_no_image_outside_the_evaluated_datasets(trained, tmp_path):
    trained = own_copy(trained, tmp_path)
    folder = _eval_dirs(trained)[0].parent
    secret = tmp_path / "secret.png"  # a file of the machine an edited errors.csv names: pure magenta
    Image.fromarray(np.full((48, 48, 3), (255, 0, 255), np.uint8)).save(secret)
    with open(folder / "errors.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows[::2]:
        row["image_path"] = str(secret)
    with open(folder / "errors.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = subprocess.run([str(BIN / "cubepose"), "report", str(folder)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "not drawn" in result.stderr
    page = (folder / "report.html").read_text()
    assert page.count("<figure>") > 0  # the images of the dataset are still drawn
    for encoded in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page):
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")).astype(int)
        magenta = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] > 200)
        assert magenta.sum() < 50, "the secret image's pixels are in the report"


def test_cubepose_predict_on_an_edflow_checkpoint_reproduces_its_evaluation(trained):
    outputs = _eval_dirs(trained)[0]
    with open(outputs.parent / "errors.csv") as handle:
        images = [row["image_path"] for row in csv.DictReader(handle)]
    checkpoint = trained / "train" / "checkpoints" / "model-6.ckpt"
    result = subprocess.run(
        [str(BIN / "cubepose"), "predict", "--checkpoint", str(checkpoint), *images], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    labels = MetaDataset(str(outputs)).labels
    poses = [r["poses"][0] for r in records]
    np.testing.assert_allclose([p["translation"] for p in poses], labels["translation_pred"], atol=1e-5)
    np.testing.assert_allclose([p["quaternion"] for p in poses], labels["quaternion_pred"], atol=1e-5)  # same sign


def test_same_seed_and_config_train_the_same_weights_on_cpu(trained, tiny_data, tmp_path):
    """Two more runs like the `trained` one (seed 0), and one with seed 1: weights after 6 steps."""
    states = {}
    for name, seed in (("again", "0"), ("other", "1")):
        work = tmp_path / name
        work.mkdir()
        args = ["-n", name, "-b", *CONFIGS, "-t", "--num_steps", "6", "--losses/orientation/weight", "2"]
        _ok(edflow([*args, "--seed", seed, "--n_data_processes", "2"], work, tiny_data))
        (run,) = (work / "logs").glob(f"*_{name}")
        states[name] = torch.load(run / "train" / "checkpoints" / "model-6.ckpt", weights_only=True)["model"]
    first = torch.load(trained / "train" / "checkpoints" / "model-6.ckpt", weights_only=True)["model"]
    assert all(torch.equal(first[key], states["again"][key]) for key in first)
    assert not all(torch.equal(first[key], states["other"][key]) for key in first)


def test_the_accurate_cpu_recipe_trains_and_evaluates_through_edflow(tiny_data, tmp_path):
    """accurate_cpu.yaml (two stages with a crop, 6D rotation, window + sign-invariant + ADD losses,
    cosine) through the real CLI, at the tiny data's size."""
    configs = [*CONFIGS, str(REPO / "configs" / "accurate_cpu.yaml")]
    small_crop = ["--network/crop/locate_size", "32", "--network/crop/size", "32"]
    _ok(edflow(["-n", "accurate", "-b", *configs, "-t", "--num_steps", "4", *small_crop], tmp_path, tiny_data))
    (run,) = (tmp_path / "logs").glob("*_accurate")
    state = torch.load(run / "train" / "checkpoints" / "model-4.ckpt", weights_only=True)
    assert state["config"]["network"]["rotation"] == "6d" and state["config"]["network"]["crop"]["active"]
    assert state["model"]["crop_head.branches.quaternion.4.weight"].shape[0] == 6  # stage 2 regresses 6 numbers
    assert state["model"]["head.branches.window.4.weight"].shape[0] == 3  # stage 1 locates the cube
    (metrics,) = run.glob("eval/*/*/metrics.json")
    values = json.loads(metrics.read_text())
    assert math.isfinite(values["rotation_error_deg_mean"]) and math.isfinite(values["add_cm_mean"])
    log = (run / "train" / "log.txt").read_text()
    assert "loss_window" in log and "learning_rate" in log
    # evaluating the checkpoint reproduces the run's own poses (the crop is deterministic)
    _ok(edflow(["-b", *configs, "-p", str(run), *small_crop], tmp_path, tiny_data))
    during, after = (MetaDataset(str(outputs)).labels for outputs in _eval_dirs(run))
    for key in ("translation_pred", "quaternion_pred"):
        np.testing.assert_allclose(after[key], during[key], atol=1e-5)
