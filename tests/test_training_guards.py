"""Hostile and broken input around training: non-finite config values, diverging runs, the final
checkpoint, one-line errors without leftover run folders, and NaN predictions in the evaluation."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_edflow_e2e import CONFIGS, edflow

from conftest import REPO
from cubepose.cli import main
from cubepose.config import load_config_files, validate_config
from cubepose.engine.callbacks import pose_metrics, report, unity_metrics
from cubepose.errors import ConfigError
from cubepose.evaluation.metrics import instance_errors, pose_dataset_metrics, unity_dataset_metrics
from cubepose.geometry.object import Box

# --- config values -------------------------------------------------------------------------------

RAMP = {"start": 0.1, "end": 1.0, "start_step": 0, "end_step": 10}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"optimizer": {"lr": 0}}, "optimizer/lr: 0.0 must be above 0"),
        ({"optimizer": {"lr": "inf"}}, "optimizer/lr: inf is not a finite number"),  # edflow's --optimizer/lr inf
        ({"optimizer": {"lr": float("nan")}}, "optimizer/lr: nan is not a finite number"),
        (yaml.safe_load("optimizer: {weight_decay: .inf}"), "optimizer/weight_decay: inf is not a finite number"),
        ({"optimizer": {"clip_grad_norm": "-inf"}}, "optimizer/clip_grad_norm: -inf is not a finite number"),
        ({"optimizer": {"betas": [0.9, 1.5]}}, r"optimizer/betas: 1.5 is not a number in \[0.0, 1.0\)"),
        ({"optimizer": {"betas": [".nan", 0.9]}}, r"optimizer/betas: nan is not a number in \[0.0, 1.0\)"),
        ({"data": {"camera": {"vertical_fov": ".nan"}}}, "data/camera/vertical_fov: nan is not a finite number"),
        ({"data": {"camera": {"vertical_fov": 200}}}, "data/camera/vertical_fov: 200.0 is not between 0 and 180"),
        ({"data": {"camera": dict(fx=0, fy=0, cx=32, cy=32)}}, "data/camera: the focal lengths fx, fy must be above 0"),
        ({"data": {"camera": dict(fx=1e308, fy=60, cx=32, cy=32)}}, "data/camera: fx, fy, cx, cy must be at most 1e"),
        ({"losses": {"translation": {"type": "mse", "weight": "inf"}}}, "losses/translation/weight: inf is not a"),
        ({"losses": {"translation": {"type": "mse", "weight": -1}}}, "losses/translation/weight: -1.0 is below"),
        (
            {"losses": {"orientation": {"type": "mse", "weight": {**RAMP, "end": float("inf")}}}},
            "losses/orientation/weight: ramp value end: inf must be a finite number >= 0",
        ),
        (
            {"losses": {"orientation": {"type": "mse", "weight": {**RAMP, "start": float("nan")}}}},
            "losses/orientation/weight: ramp value start: nan must be a finite number >= 0",
        ),
    ],
)
def test_non_finite_and_out_of_range_numbers_are_named(config, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_command_line_infinity_is_refused_and_finite_numbers_pass():
    paths = [REPO / "configs" / "base.yaml", REPO / "configs" / "cpu.yaml"]
    with pytest.raises(ConfigError, match="losses/translation/weight: inf is not a finite number"):
        load_config_files(*paths, overrides={"losses/translation/weight": "inf"})
    config = validate_config({"optimizer": {"lr": "1e6", "betas": [0, 0.5]}, "losses": {"pose": {"type": "add"}}})
    assert config["optimizer"]["lr"] == 1e6 and config["optimizer"]["betas"] == [0.0, 0.5]


# --- metrics and the evaluation over NaN predictions ---------------------------------------------

COUNT = 16
BROKEN = [3, 7, 11]  # predictions with NaN, inf and a NaN quaternion


def poses() -> dict[str, np.ndarray]:
    """16 true and predicted poses (1 to 4 cm and 1 to 8 degrees off) with three non-finite predictions."""
    rng = np.random.default_rng(0)
    t_true = np.column_stack([rng.uniform(-0.2, 0.2, (COUNT, 2)), rng.uniform(0.8, 1.5, COUNT)])
    angles = np.radians(rng.uniform(0, 90, COUNT)) / 2
    q_true = np.column_stack([np.zeros(COUNT), np.sin(angles), np.zeros(COUNT), np.cos(angles)])
    offsets = np.radians(np.linspace(1, 8, COUNT)) / 2
    q_pred = np.column_stack([np.zeros(COUNT), np.sin(angles + offsets), np.zeros(COUNT), np.cos(angles + offsets)])
    t_pred = t_true + np.column_stack([np.linspace(0.01, 0.04, COUNT), np.zeros(COUNT), np.zeros(COUNT)])
    t_pred[3] = np.nan
    t_pred[7, 2] = np.inf
    q_pred[11, 0] = np.nan
    return {
        "translation_pred": t_pred,
        "translation_true": t_true,
        "quaternion_pred": q_pred,
        "quaternion_true": q_true,
    }


@pytest.mark.filterwarnings("error")  # no "invalid value" or "mean of empty slice" warnings either
def test_metrics_are_over_finite_predictions_and_count_the_others_as_failures():
    labels = poses()
    finite = np.setdiff1d(np.arange(COUNT), BROKEN)
    clean = {key: value[finite] for key, value in labels.items()}
    args = [labels[k] for k in ("translation_pred", "translation_true", "quaternion_pred", "quaternion_true")]
    clean_args = [clean[k] for k in ("translation_pred", "translation_true", "quaternion_pred", "quaternion_true")]

    assert unity_dataset_metrics(*args) == pytest.approx(unity_dataset_metrics(*clean_args))

    metrics, reference = pose_dataset_metrics(*args), pose_dataset_metrics(*clean_args)
    assert metrics["non_finite_predictions"] == 3 and reference["non_finite_predictions"] == 0
    for key in ("translation_error_cm_mean", "rotation_error_deg_p90", "add_cm_median"):
        assert metrics[key] == pytest.approx(reference[key])
    for key in ("accuracy_5cm_5deg", "accuracy_add_10pct_diagonal"):  # same hits, over all 16 instances
        assert metrics[key] == pytest.approx(reference[key] * len(finite) / COUNT)
    assert metrics["accuracy_5cm_5deg"] > 0

    errors = instance_errors(*args)
    for name in ("translation_error_cm", "rotation_error_deg", "add_cm"):
        assert np.isnan(errors[name][BROKEN]).all() and np.isfinite(errors[name][finite]).all()
    assert np.isfinite(errors["distance_m"]).all() and np.isfinite(errors["true_yaw_deg"]).all()
    symmetric = pose_dataset_metrics(*args, box=Box(symmetry="cube"))
    assert symmetric["non_finite_predictions"] == 3 and math.isfinite(symmetric["add_cm_mean"])
    assert np.isnan(instance_errors(*args, box=Box(symmetry="cube"))["rotation_error_deg"][BROKEN]).all()


def test_no_finite_prediction_gives_nan_summaries_and_zero_accuracy():
    labels = poses()
    labels["translation_pred"][:] = np.nan
    metrics = pose_dataset_metrics(*(labels[k] for k in labels))
    assert metrics["non_finite_predictions"] == COUNT and metrics["accuracy_5cm_5deg"] == 0
    assert math.isnan(metrics["translation_error_cm_mean"])


def test_evaluation_callbacks_and_report_tolerate_nan_predictions(tmp_path):
    labels = poses()
    labels["camera"] = np.tile(np.array([40.0, 40.0, 16.0, 16.0], np.float32), (COUNT, 1))  # a 32 px input
    image_paths = []
    for index in range(COUNT):
        path = tmp_path / f"image_{index}.png"
        Image.fromarray(np.full((48, 48, 3), 40 + 10 * index, np.uint8)).save(path)
        image_paths.append(str(path))
    root = tmp_path / "eval" / "7"
    root.mkdir(parents=True)
    data_in = SimpleNamespace(labels={"image_path": np.array(image_paths)})
    data_out = SimpleNamespace(labels={k: v.astype(np.float32) for k, v in labels.items()})
    config = {}

    scalars = unity_metrics(str(root), data_in, data_out, config)["scalars"]
    scalars.update(pose_metrics(str(root), data_in, data_out, config)["scalars"])
    report(str(root), data_in, data_out, config)

    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["non_finite_predictions"] == 3 and metrics["instances"] == COUNT
    assert all(math.isfinite(value) for value in metrics.values())
    assert scalars["non_finite_predictions"] == 3
    with open(root / "errors.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == COUNT  # the broken predictions keep their rows, with nan errors
    assert [rows[i]["add_cm"] for i in BROKEN] == ["nan"] * 3 and rows[0]["add_cm"] != "nan"
    page = (root / "report.html").read_text()
    assert "3 of 16 predictions were not finite" in page
    assert page.count("<figure>") == 16  # 8 worst + 8 median, drawn from the 13 finite predictions
    assert all(f"#{i}:" not in page for i in BROKEN)


def test_metrics_json_stays_valid_json_when_no_prediction_is_finite(tmp_path):
    labels = poses()
    labels["translation_pred"][:] = np.nan
    data_out = SimpleNamespace(labels={k: v.astype(np.float32) for k, v in labels.items()})
    pose_metrics(str(tmp_path), SimpleNamespace(labels={}), data_out, {})
    metrics = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda name: pytest.fail(name))
    assert metrics["translation_error_cm_mean"] is None and metrics["non_finite_predictions"] == COUNT
    assert main(["metrics", str(tmp_path)]) == 0


# --- through the real edflow command -------------------------------------------------------------


def _clean(result) -> str:
    """stderr after checking the run failed without any traceback."""
    assert result.returncode != 0, result.stdout[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    return result.stderr


@pytest.fixture(scope="module")
def seven_steps(tiny_data, tmp_path_factory) -> Path:
    """A run of 7 steps with a checkpoint every 3 steps."""
    work = tmp_path_factory.mktemp("seven")
    result = edflow(["-n", "seven", "-b", *CONFIGS, "-t", "--num_steps", "7", "--ckpt_freq", "3"], work, tiny_data)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (work / "logs").glob("*_seven")
    run.joinpath("stdout.txt").write_text(result.stdout)
    return run


def test_the_final_step_is_checkpointed_whatever_ckpt_freq_is(seven_steps, tiny_data, tmp_path):
    checkpoints = seven_steps / "train" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == ["model-3.ckpt", "model-6.ckpt", "model-7.ckpt"]
    assert seven_steps.joinpath("stdout.txt").read_text().count("model-7.ckpt") == 1  # saved once
    assert torch.load(checkpoints / "model-7.ckpt", weights_only=True)["global_step"] == 7
    (evaluated,) = seven_steps.glob("eval/*/7/metrics.json")  # the evaluated weights are model-7's

    result = edflow(["-b", *CONFIGS, "-p", str(seven_steps)], tmp_path, tiny_data)
    assert result.returncode == 0, result.stderr[-3000:]
    (again,) = [p for p in seven_steps.glob("eval/*/7/metrics.json") if p != evaluated]
    assert json.loads(again.read_text())["translation_mse"] == pytest.approx(
        json.loads(evaluated.read_text())["translation_mse"], rel=1e-5
    )


def test_a_config_error_in_an_evaluation_of_a_run_removes_only_its_new_eval_folder(seven_steps, tiny_data, tmp_path):
    before = sorted(seven_steps.glob("eval/*"))
    result = edflow(["-b", *CONFIGS, "-p", str(seven_steps), "--optimizer/lr", ".nan"], tmp_path, tiny_data)
    assert "error: invalid config:\n  - optimizer/lr: nan is not a finite number" in _clean(result)
    assert sorted(seven_steps.glob("eval/*")) == before
    assert len(list(seven_steps.glob("train/checkpoints/*.ckpt"))) == 3


def test_a_config_error_prints_one_message_and_leaves_no_run_folder(tiny_data, tmp_path):
    result = edflow(["-n", "bad", "-b", *CONFIGS, "-t", "--losses/translation/weight", "inf"], tmp_path, tiny_data)
    stderr = _clean(result)
    assert "error: invalid config:\n  - losses/translation/weight: inf is not a finite number" in stderr
    assert not list(tmp_path.glob("logs/*"))


def test_a_diverging_run_stops_naming_step_term_and_cause_and_saves_no_nan(tiny_data, tmp_path):
    result = edflow(
        ["-n", "diverge", "-b", *CONFIGS, "-t", "--num_steps", "12", "--optimizer/lr", "1e6"], tmp_path, tiny_data
    )
    stderr = _clean(result)
    (line,) = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert "training stopped at global step" in line and "the loss is not finite (translation" in line
    assert "optimizer/lr 1e+06 is too high" in line and "cubepose inspect" in line
    assert "No checkpoint was written" in line
    assert "not saving" in result.stdout  # edflow's save-on-exception was refused
    (run,) = tmp_path.glob("logs/*_diverge")  # kept: it holds the logged steps before the divergence
    assert not list(run.glob("train/checkpoints/*.ckpt")) and not list(run.glob("eval/*/*/model_outputs"))


def test_an_image_failing_on_a_data_thread_stops_the_run_with_one_message(tiny_data, tmp_path):
    broken = shutil.copytree(tiny_data["train"], tmp_path / "train")
    for image in broken.rglob("*.png"):
        data = bytearray(image.read_bytes())
        data[60:120] = bytes(60)  # damaged image data; decoded by edflow's batch threads without the cache
        image.write_bytes(bytes(data))
    data = {**tiny_data, "train": broken}
    result = edflow(
        ["-n", "broken", "-b", *CONFIGS, "-t", "--num_steps", "4", "--image_cache", "false"], tmp_path, data
    )
    (line,) = [line for line in _clean(result).replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert "cannot decode image" in line and "re-export or remove this capture" in line
    assert not list(tmp_path.glob("logs/*"))


def test_the_divergence_message_names_step_terms_and_cause():
    from cubepose.training.guards import divergence_message

    config = {"optimizer": {"lr": 1e6}, "data": {"train": {"root": "data/cube/train"}}}
    losses = {
        "translation": np.array([0.1, np.nan]),
        "orientation": np.array([0.2, 0.3]),
        "total": np.array([1, np.nan]),
    }
    diverged = divergence_message(12, losses, np.array([True, True]), np.array([40, 41]), config)
    assert diverged.startswith("training stopped at global step 12: the loss is not finite (translation)")
    assert "optimizer/lr 1e+06 is too high: lower it (e.g. --optimizer/lr 100000)" in diverged
    assert "`cubepose inspect data/cube/train`" in diverged
    label = divergence_message(12, losses, np.array([True, False]), np.array([40, 41]), config)
    assert "the labels of training examples 41 are not finite" in label and "cubepose inspect" in label
    overflow = {"translation": np.array([1e30]), "total": np.array([np.inf])}
    assert "(total (the weighted sum overflowed)); the loss weights are too large" in divergence_message(
        3, overflow, np.array([True]), None, config
    )
