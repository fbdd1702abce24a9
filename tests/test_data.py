"""The edflow datasets and the legacy layout's variants, on real generated PNG files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cubepose.config import validate_config
from cubepose.data import TestDataset as CubeTestDataset
from cubepose.data import TrainDataset, ValidationDataset
from cubepose.data.formats import read_dataset
from cubepose.data.legacy import read_legacy
from cubepose.data.splits import fraction_split, sample_indices
from cubepose.errors import ConfigError, DatasetError
from cubepose.geometry.projection import intrinsics_from_fov


def _captures_file(root: Path) -> Path:
    return next(root.glob("Dataset*/captures_000.json"))


def edit_captures(root: Path, edit) -> None:
    """Apply ``edit`` to the capture list of the dataset's first captures file."""
    path = _captures_file(root)
    data = json.loads(path.read_text())
    edit(data["captures"])
    path.write_text(json.dumps(data))


@pytest.fixture
def copy_of(tiny_data, tmp_path):
    def copy(split: str) -> Path:
        return Path(shutil.copytree(tiny_data[split], tmp_path / split))

    return copy


def test_datasets_return_image_translation_quaternion_camera(tiny_config, tiny_data):
    config = validate_config(tiny_config)
    train, validation, test = TrainDataset(config), ValidationDataset(config), CubeTestDataset(config)
    assert (len(train), len(validation), len(test)) == (48, 16, 12)
    example = train[0]
    assert example["image"].shape == (32, 32, 3) and example["image"].dtype == np.uint8  # scaled on the device
    assert example["image"].min() < example["image"].max()
    first = json.loads(_captures_file(tiny_data["train"]).read_text())["captures"][0]["annotations"][0]["values"][0]
    np.testing.assert_allclose(example["translation"], first["translation"], rtol=1e-6)
    np.testing.assert_allclose(np.abs(example["quaternion"]), np.abs(first["rotation"]), rtol=1e-5)
    assert example["quaternion"][3] >= 0 and np.isclose(np.linalg.norm(example["quaternion"]), 1.0)
    # legacy camera: data/camera/vertical_fov (60) at the 48 px export, scaled to the 32 px network input
    np.testing.assert_allclose(example["camera"], intrinsics_from_fov(60.0, 48, 48) * 32 / 48, rtol=1e-6)
    np.testing.assert_array_equal(train.labels["original_size"][0], [48, 48])


def test_pixel_intrinsics_from_the_config_win_over_the_field_of_view(tiny_config):
    tiny_config["data"]["camera"].update(fx=40.0, fy=41.0, cx=24.0, cy=23.0)
    dataset = TrainDataset(validate_config(tiny_config))
    np.testing.assert_allclose(dataset[0]["camera"], np.array([40.0, 41.0, 24.0, 23.0]) * 32 / 48, rtol=1e-6)


def test_partial_pixel_intrinsics_are_a_config_error(tiny_config):
    tiny_config["data"]["camera"]["fx"] = 40.0
    with pytest.raises(ConfigError, match="set all of fx, fy, cx, cy or none; missing data/camera/fy"):
        validate_config(tiny_config)


def test_captures_files_are_read_in_numeric_order(copy_of):
    root = copy_of("train")
    path = _captures_file(root)
    captures = json.loads(path.read_text())["captures"]
    path.unlink()
    # 1000 sorts before 999 as text; file order must be numeric
    for number, chunk in ((999, captures[:20]), (1000, captures[20:40]), (2, captures[40:])):
        (path.parent / f"captures_{number:03d}.json").write_text(json.dumps({"captures": chunk}))
    index = read_legacy(root)
    order = [captures[i]["filename"] for i in [*range(40, 48), *range(0, 40)]]
    assert [Path(p).relative_to(root).as_posix() for p in index.image_paths] == order


def test_sample_size_is_a_seeded_subset_identical_on_every_run(tiny_config):
    tiny_config["data"]["train"]["sample_size"] = 5
    config = validate_config(tiny_config)
    first, second = TrainDataset(config), TrainDataset(config)
    np.testing.assert_array_equal(first.labels["image_path"], second.labels["image_path"])
    assert len(first) == 5
    # numpy's Generator stream is fixed for a seed: the same indices on every machine
    np.testing.assert_array_equal(sample_indices(48, 5, seed=0, split="train"), [14, 22, 26, 40, 45])
    assert not np.array_equal(sample_indices(48, 5, seed=1, split="train"), [14, 22, 26, 40, 45])


def test_validation_fraction_splits_train_data_disjointly_and_stably(tiny_config):
    tiny_config["data"]["validation_fraction"] = 0.25
    tiny_config["data"]["validation"]["root"] = "/does/not/matter"
    config = validate_config(tiny_config)
    train, validation = TrainDataset(config), ValidationDataset(config)
    assert (len(train), len(validation)) == (36, 12)
    train_paths, validation_paths = set(train.labels["image_path"]), set(validation.labels["image_path"])
    assert not train_paths & validation_paths and len(train_paths | validation_paths) == 48
    np.testing.assert_array_equal(fraction_split(10, 0.3, seed=0)["validation"], [3, 7, 9])  # fixed on every machine
    np.testing.assert_array_equal(ValidationDataset(config).labels["image_path"], validation.labels["image_path"])
    tiny_config["data"]["seed"] = 1
    assert set(ValidationDataset(validate_config(tiny_config)).labels["image_path"]) != validation_paths


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_validation_fraction_must_be_inside_zero_one(tiny_config, fraction):
    tiny_config["data"]["validation_fraction"] = fraction
    with pytest.raises(ConfigError, match="data/validation_fraction"):
        validate_config(tiny_config)


def test_object_vectors_in_any_key_order_and_several_annotations(copy_of):
    root = copy_of("validation")
    reference = read_legacy(root)

    def to_objects_and_add_2d_boxes(captures):
        for capture in captures:
            value = capture["annotations"][0]["values"][0]
            t, r = value["translation"], value["rotation"]
            value["translation"] = {"z": t[2], "x": t[0], "y": t[1]}
            value["rotation"] = {"w": r[3], "y": r[1], "x": r[0], "z": r[2]}
            box2d = {"id": "a", "annotation_definition": 7, "values": [{"label_id": 1, "x": 3, "y": 4}]}
            capture["annotations"].insert(0, box2d)  # the 3D box is no longer annotations[0]

    edit_captures(root, to_objects_and_add_2d_boxes)
    index = read_legacy(root)  # chosen by definition name
    np.testing.assert_allclose(index.translations, reference.translations)
    np.testing.assert_allclose(index.quaternions, reference.quaternions)
    (next(root.glob("Dataset*")) / "annotation_definitions.json").unlink()
    index = read_legacy(root)  # chosen by the shape of its values
    np.testing.assert_allclose(index.quaternions, reference.quaternions)


def test_box_definition_with_an_int_id_is_found_by_its_definition(copy_of):
    root = copy_of("validation")
    definitions_path = next(root.glob("Dataset*/annotation_definitions.json"))
    definitions = json.loads(definitions_path.read_text())
    definitions["annotation_definitions"][0]["id"] = 3
    # a decoy definition whose values also look like 3D boxes must not be picked
    definitions["annotation_definitions"].append({"id": 4, "name": "keypoints", "format": "JSON"})
    definitions_path.write_text(json.dumps(definitions))

    def int_ids_and_decoy(captures):
        for capture in captures:
            box = capture["annotations"][0]
            box["annotation_definition"] = 3
            decoy = {**box, "annotation_definition": 4, "values": [{**box["values"][0], "translation": [5, 5, 5]}]}
            capture["annotations"].insert(0, decoy)

    edit_captures(root, int_ids_and_decoy)
    index = read_legacy(root)
    assert len(index) == 16 and np.all(index.translations[:, 0, 0] < 5)


def test_label_name_selects_among_several_objects(copy_of):
    root = copy_of("validation")

    def add_a_second_object(captures):
        for capture in captures:
            values = capture["annotations"][0]["values"]
            values.append({**values[0], "label_name": "table", "translation": [9.0, 9.0, 9.0], "instance_id": 2})

    edit_captures(root, add_a_second_object)
    with pytest.raises(DatasetError, match=r"16 several labels \(set data/label_name\).*cube_position \(16\)"):
        read_legacy(root)
    index = read_legacy(root, label_name="cube_position")
    assert len(index) == 16 and np.all(index.translations[:, 0, 0] < 9)
    with pytest.raises(DatasetError, match=r"16 label not present.*labels present: cube_position \(16\), table"):
        read_legacy(root, label_name="Cube")


def test_several_instances_of_the_label_are_skipped_unless_instance_id_picks_one(copy_of):
    root = copy_of("validation")

    def second_cube_in_half_the_captures(captures):
        for capture in captures[:8]:
            values = capture["annotations"][0]["values"]
            values.append({**values[0], "instance_id": 2, "translation": [7.0, 7.0, 7.0]})

    edit_captures(root, second_cube_in_half_the_captures)
    index = read_legacy(root)
    assert len(index) == 8 and index.skipped == {"several instances (set data/instance_id or data/max_instances)": 8}
    index = read_legacy(root, instance_id=2)
    assert len(index) == 8 and np.all(index.translations == 7.0)
    assert index.skipped == {"instance not present": 8}
    assert len(read_legacy(root, instance_id=1)) == 16


def test_forced_format_must_match_the_data(tiny_data):
    assert read_dataset(tiny_data["test"], fmt="legacy").format == "legacy"
    with pytest.raises(DatasetError, match="expected a SOLO dataset.*set data/format: auto"):
        read_dataset(tiny_data["test"], fmt="solo")


def test_root_may_be_the_dataset_json_folder_or_a_flattened_export(copy_of):
    root = copy_of("test")
    reference = read_legacy(root)
    (json_dir,) = root.glob("Dataset*")
    assert len(read_legacy(json_dir)) == 12  # images are found relative to the folder above
    (rgb,) = root.glob("RGB*")
    shutil.move(rgb, json_dir / rgb.name)  # everything in one folder
    np.testing.assert_allclose(read_legacy(json_dir).translations, reference.translations)


def test_image_cache_gives_the_same_examples_and_is_rebuilt_when_an_image_changes(copy_of, tiny_config, tmp_path):
    root = copy_of("validation")
    tiny_config["data"]["train"]["root"] = str(root)
    tiny_config["data"]["cache_dir"] = str(tmp_path / "cache")
    tiny_config["image_cache"] = False
    decoded = TrainDataset(validate_config(tiny_config))
    tiny_config["image_cache"] = True
    cached = TrainDataset(validate_config(tiny_config))
    for i in (0, 7, 15):
        np.testing.assert_array_equal(cached[i]["image"], decoded[i]["image"])
    (built,) = (tmp_path / "cache" / "images").glob("*.npy")
    before = built.stat().st_mtime_ns
    TrainDataset(validate_config(tiny_config))
    assert built.stat().st_mtime_ns == before  # reused
    image = Path(cached.labels["image_path"][3])
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(image)  # a changed file: a new cache
    rebuilt = TrainDataset(validate_config(tiny_config))
    assert len(list((tmp_path / "cache" / "images").glob("*.npy"))) == 2
    assert rebuilt[3]["image"].max() == 0
    assert not list((tmp_path / "cache" / "images").glob(".*.tmp"))


def test_image_cache_built_by_worker_processes_matches(tiny_config, tmp_path, monkeypatch):
    from cubepose.data import image_cache

    monkeypatch.setattr(image_cache, "POOL_MINIMUM", 1)  # use the process pool even for 48 images
    tiny_config["data"]["cache_dir"] = str(tmp_path)
    tiny_config["image_cache"] = False
    decoded = TrainDataset(validate_config(tiny_config))
    tiny_config["image_cache"] = True
    cached = TrainDataset(validate_config(tiny_config))
    for i in range(0, 48, 5):
        np.testing.assert_array_equal(cached[i]["image"], decoded[i]["image"])
