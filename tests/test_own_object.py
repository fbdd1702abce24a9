"""A user's own box and camera end to end: generate, train through edflow, evaluate and predict."""

from __future__ import annotations

import csv
import json
import subprocess

import numpy as np
import pytest
import torch
from edflow.data.believers.meta import MetaDataset
from test_edflow_e2e import CONFIGS, _eval_dirs, _ok, edflow

from conftest import BIN
from cubepose.evaluation.metrics import add_distance
from cubepose.geometry.object import Box

CAMERA = (96, 64, 70.0, 80.0, 40.0, 36.0)  # non-square, fx != fy, off-centre principal point


@pytest.mark.parametrize(
    ("dimensions", "distances"),
    [((0.05, 0.05, 0.05), ("0.3", "0.55")), ((0.3, 0.2, 0.1), ("0.9", "1.3"))],
    ids=["5cm-cube", "30x20x10cm-box"],
)
def test_an_own_box_and_camera_generate_train_evaluate_and_predict(dimensions, distances, tmp_path):
    data = {}
    for split, count, seed in (("train", 16, 1), ("validation", 8, 2)):
        data[split] = tmp_path / "data" / split
        command = [str(BIN / "cubepose"), "generate", str(data[split]), "--count", str(count), "--seed", str(seed)]
        command += ["--camera", *map(str, CAMERA), "--object-dimensions", *map(str, dimensions)]
        command += ["--min-distance", distances[0], "--max-distance", distances[1], "--format", "solo"]
        _ok(subprocess.run(command, capture_output=True, text=True, timeout=300))

    size = "[" + ",".join(map(str, dimensions)) + "]"
    args = ["-n", "own", "-b", *CONFIGS, "-t", "--num_steps", "2", "--object/dimensions", size]
    _ok(edflow(args, tmp_path, data))
    (run,) = (tmp_path / "logs").glob("*_own")
    outputs = _eval_dirs(run)[-1]
    labels = MetaDataset(str(outputs)).labels
    poses = [labels[k] for k in ("translation_pred", "quaternion_pred", "translation_true", "quaternion_true")]
    with open(outputs.parent / "errors.csv") as handle:
        add_cm = np.array([float(row["add_cm"]) for row in csv.DictReader(handle)])
    np.testing.assert_allclose(add_cm, add_distance(*poses, box=Box(dimensions)) * 100, rtol=1e-4)
    assert not np.allclose(add_cm, add_distance(*poses) * 100, rtol=1e-2)  # the default cube gives other ADDs
    assert (outputs.parent / "report.html").exists()

    checkpoint = run / "train" / "checkpoints" / "model-2.ckpt"
    recorded = torch.load(checkpoint, weights_only=True)["camera"]["intrinsics"]
    width, height, fx, fy, cx, cy = CAMERA
    np.testing.assert_allclose(recorded, [fx * 32 / width, fy * 32 / height, cx * 32 / width, cy * 32 / height])
    (image,) = sorted(data["validation"].glob("sequence.0/*.png"))
    predict = [str(BIN / "cubepose"), "predict", "--checkpoint", str(checkpoint), str(image)]
    same = _ok(subprocess.run([*predict, "--intrinsics", *map(str, CAMERA[2:])], capture_output=True, text=True))
    assert len(json.loads(same.stdout)["poses"][0]["translation"]) == 3
    other = subprocess.run([*predict, "--intrinsics", "90", "80", "40", "36"], capture_output=True, text=True)
    assert other.returncode == 2 and "error" in json.loads(other.stdout)
