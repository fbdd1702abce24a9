"""Reading the legacy Perception layout: real PNG files, variants and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cubepose.config import validate_config
from cubepose.data import TestDataset as CubeTestDataset
from cubepose.data import TrainDataset, ValidationDataset
from cubepose.data.legacy import read_legacy
from cubepose.data.pose_index import sample_indices
from cubepose.errors import DatasetError


def _captures_file(root: Path) -> Path:
    return next(root.glob("Dataset*/captures_000.json"))


def _edit_captures(root: Path, edit) -> None:
    path = _captures_file(root)
    data = json.loads(path.read_text())
    edit(data["captures"])
    path.write_text(json.dumps(data))


@pytest.fixture
def copy_of(tiny_data, tmp_path):
    def copy(split: str) -> Path:
        return Path(shutil.copytree(tiny_data[split], tmp_path / split))

    return copy


def test_datasets_return_image_translation_quaternion(tiny_config, tiny_data):
    config = validate_config(tiny_config)
    train, validation, test = TrainDataset(config), ValidationDataset(config), CubeTestDataset(config)
    assert (len(train), len(validation), len(test)) == (48, 16, 12)
    example = train[0]
    assert example["image"].shape == (32, 32, 3) and example["image"].dtype == np.float32
    assert -1.0 <= example["image"].min() < example["image"].max() <= 1.0
    first = json.loads(_captures_file(tiny_data["train"]).read_text())["captures"][0]["annotations"][0]["values"][0]
    np.testing.assert_allclose(example["translation"], first["translation"], rtol=1e-6)
    np.testing.assert_allclose(np.abs(example["quaternion"]), np.abs(first["rotation"]), rtol=1e-5)
    assert example["quaternion"][3] >= 0 and np.isclose(np.linalg.norm(example["quaternion"]), 1.0)


def test_captures_are_read_from_every_captures_file(tiny_data):
    files = sorted(tiny_data["train"].glob("Dataset*/captures_*.json"))
    assert len(files) == 1
    assert len(read_legacy(tiny_data["train"])) == 48


def test_sample_size_is_a_seeded_subset_identical_on_every_run(tiny_config):
    tiny_config["data"]["train"]["sample_size"] = 5
    config = validate_config(tiny_config)
    first, second = TrainDataset(config), TrainDataset(config)
    np.testing.assert_array_equal(first.labels["image_path"], second.labels["image_path"])
    assert len(first) == 5
    # numpy's Generator stream is fixed for a seed: the same indices on every machine
    np.testing.assert_array_equal(sample_indices(48, 5, seed=0, split="train"), [14, 22, 26, 40, 45])
    assert not np.array_equal(sample_indices(48, 5, seed=1, split="train"), [14, 22, 26, 40, 45])


def test_object_vectors_and_several_annotations_are_read(copy_of):
    root = copy_of("validation")

    def to_objects_and_add_2d_boxes(captures):
        for capture in captures:
            value = capture["annotations"][0]["values"][0]
            t, r = value["translation"], value["rotation"]
            value["translation"] = {"z": t[2], "x": t[0], "y": t[1]}
            value["rotation"] = {"w": r[3], "y": r[1], "x": r[0], "z": r[2]}
            box2d = {"id": "a", "annotation_definition": "box2d-def", "values": [{"label_id": 1, "x": 3, "y": 4}]}
            capture["annotations"].insert(0, box2d)

    reference = read_legacy(root)
    _edit_captures(root, to_objects_and_add_2d_boxes)
    (next(root.glob("Dataset*")) / "annotation_definitions.json").unlink()  # choose by value shape
    index = read_legacy(root)
    np.testing.assert_allclose(index.translations, reference.translations)
    np.testing.assert_allclose(index.quaternions, reference.quaternions)


def test_label_name_selects_among_several_objects(copy_of):
    root = copy_of("validation")

    def add_a_second_object(captures):
        for capture in captures:
            values = capture["annotations"][0]["values"]
            values.append({**values[0], "label_name": "table", "translation": [9.0, 9.0, 9.0], "instance_id": 2})

    _edit_captures(root, add_a_second_object)
    with pytest.raises(DatasetError, match=r"16 several labels \(set data/label_name\)"):
        read_legacy(root)
    index = read_legacy(root, label_name="cube_position")
    assert len(index) == 16 and np.all(index.translations[:, 0] < 9)


def test_bad_captures_are_skipped_counted_and_reported_once(copy_of, caplog):
    root = copy_of("validation")

    def break_some(captures):
        captures[0]["annotations"][0]["values"] = []
        captures[1]["annotations"][0]["values"][0]["translation"] = [float("nan"), 0.0, 1.0]
        captures[2]["annotations"][0]["values"][0]["rotation"] = [0.0, 0.0, 0.0, 0.0]
        captures[3]["filename"] = "RGBmissing/rgb_0.png"

    _edit_captures(root, break_some)
    index = read_legacy(root)
    assert len(index) == 12
    assert index.skipped == {
        "empty annotation": 1,
        "non-finite translation": 1,
        "zero or non-finite quaternion": 1,
        "missing image": 1,
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "skipped 4 of 16 captures" in warnings[0]


def test_missing_root_and_malformed_json_name_the_path(copy_of, tmp_path):
    with pytest.raises(DatasetError, match=f"dataset root {tmp_path / 'nowhere'} does not exist"):
        read_legacy(tmp_path / "nowhere")
    root = copy_of("test")
    _captures_file(root).write_text('{"captures": [ {"id": 1,, } ]}')
    with pytest.raises(DatasetError, match=r"malformed JSON in .*captures_000.json at line 1, column 25"):
        read_legacy(root)


def test_folder_without_captures_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no captures_\\*.json under"):
        read_legacy(tmp_path)


def test_corrupt_png_names_the_file(copy_of, tiny_config):
    root = copy_of("test")
    image = next(root.glob("RGB*/rgb_2.png"))
    image.write_bytes(image.read_bytes()[:50])  # truncated
    tiny_config["data"]["test"]["root"] = str(root)
    dataset = CubeTestDataset(validate_config(tiny_config))
    with pytest.raises(DatasetError, match=f"cannot decode image {image}"):
        dataset.get_example(0)
