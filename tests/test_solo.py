"""The SOLO layout (Perception 1.0+): camelCase keys, @type selection, numeric order, cameras."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cubepose.config import validate_config
from cubepose.data import TrainDataset
from cubepose.data.formats import locate_dataset, read_dataset
from cubepose.errors import DatasetError
from cubepose.geometry.projection import intrinsics_from_fov
from cubepose.synth.generate import GenerationOptions, generate_dataset

BOX3D = "type.unity.com/unity.solo.BoundingBox3DAnnotation"


@pytest.fixture(scope="module")
def both_layouts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    for layout in ("legacy", "solo"):
        generate_dataset(root / layout, GenerationOptions(count=12, seed=9, image_size=40, format=layout))
    return {layout: root / layout for layout in ("legacy", "solo")}


@pytest.fixture
def solo(both_layouts, tmp_path) -> Path:
    return Path(shutil.copytree(both_layouts["solo"], tmp_path / "solo"))


def frame(root: Path, sequence: int, step: int = 0) -> tuple[Path, dict]:
    path = root / f"sequence.{sequence}" / f"step{step}.frame_data.json"
    return path, json.loads(path.read_text())


def test_solo_and_legacy_of_the_same_scene_read_the_same(both_layouts):
    legacy, solo = read_dataset(both_layouts["legacy"]), read_dataset(both_layouts["solo"])
    assert (legacy.format, solo.format) == ("legacy", "solo")
    np.testing.assert_allclose(solo.translations, legacy.translations)
    np.testing.assert_allclose(solo.quaternions, legacy.quaternions)
    # SOLO's matrix gives the camera the generator used: 60 deg at 40 px, as data/camera says for legacy
    np.testing.assert_allclose(solo.cameras, np.tile(intrinsics_from_fov(60.0, 40, 40), (12, 1)))
    np.testing.assert_allclose(legacy.cameras, solo.cameras)


def test_sequences_and_steps_are_read_in_numeric_order(solo):
    # move sequence.11's frame to sequence.2/step10 and sequence.3's to sequence.2/step9
    for source, step in ((11, 10), (3, 9)):
        path, data = frame(solo, source)
        data["captures"][0]["filename"] = f"step{step}.camera.png"
        (solo / "sequence.2" / f"step{step}.frame_data.json").write_text(json.dumps(data))
        shutil.move(solo / f"sequence.{source}" / "step0.camera.png", solo / "sequence.2" / f"step{step}.camera.png")
        shutil.rmtree(solo / f"sequence.{source}")
    order = [Path(p).relative_to(solo).as_posix() for p in read_dataset(solo).image_paths]
    assert order[:6] == [
        "sequence.0/step0.camera.png",
        "sequence.1/step0.camera.png",
        "sequence.2/step0.camera.png",
        "sequence.2/step9.camera.png",
        "sequence.2/step10.camera.png",
        "sequence.4/step0.camera.png",
    ]
    assert order[-1] == "sequence.10/step0.camera.png"


def test_box_annotation_is_chosen_by_type_and_other_sensors_are_ignored(solo, both_layouts):
    reference = read_dataset(both_layouts["solo"])
    for number in range(12):
        path, data = frame(solo, number)
        capture = data["captures"][0]
        box = capture["annotations"][0]
        value = box["values"][0]
        t, r = value["translation"], value["rotation"]
        value["translation"] = {"y": t[1], "z": t[2], "x": t[0]}
        value["rotation"] = {"w": r[3], "x": r[0], "z": r[2], "y": r[1]}
        decoy = {"@type": "type.unity.com/unity.solo.KeypointAnnotation", "values": [{**value, "translation": [4] * 3}]}
        capture["annotations"] = [decoy, {"@type": "type.unity.com/unity.solo.BoundingBox2DAnnotation"}, box]
        data["captures"].insert(0, {"@type": "type.unity.com/unity.solo.DepthSensor", "filename": "x.exr"})
        path.write_text(json.dumps(data))
    index = read_dataset(solo)
    assert len(index) == 12 and index.total == 12
    np.testing.assert_allclose(index.translations, reference.translations)
    np.testing.assert_allclose(index.quaternions, reference.quaternions)


def test_label_name_and_instance_id_use_camel_case_keys(solo):
    for number in range(12):
        path, data = frame(solo, number)
        values = data["captures"][0]["annotations"][0]["values"]
        values.append({**values[0], "labelName": "Crate", "instanceId": 7, "translation": [3.0, 3.0, 3.0]})
        if number < 4:
            values.append({**values[0], "instanceId": 8, "translation": [5.0, 5.0, 5.0]})
        path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"several labels \(set data/label_name\)"):
        read_dataset(solo)
    crates = read_dataset(solo, label_name="Crate")
    assert len(crates) == 12 and np.all(crates.translations == 3.0)
    cubes = read_dataset(solo, label_name="cube_position")
    assert len(cubes) == 8 and cubes.skipped == {"several instances (set data/instance_id or data/max_instances)": 4}
    assert len(read_dataset(solo, label_name="cube_position", instance_id=8)) == 4


def test_empty_values_are_skipped_and_counted(solo):
    path, data = frame(solo, 5)
    data["captures"][0]["annotations"][0]["values"] = []
    path.write_text(json.dumps(data))
    index = read_dataset(solo)
    assert len(index) == 11 and index.skipped == {"empty annotation": 1}


def test_non_square_camera_stays_consistent_when_resized(tmp_path, tiny_config):
    """A 64x48 capture whose matrix is Unity's 60 deg camera: intrinsics scale per axis to 32x32."""
    sequence = tmp_path / "export" / "solo" / "sequence.0"  # wrapped in a folder, as in a zip
    sequence.mkdir(parents=True)
    Image.new("RGB", (64, 48), (10, 200, 30)).save(sequence / "step0.camera.png")
    m11 = 1 / np.tan(np.radians(30))
    capture = {
        "@type": "type.unity.com/unity.solo.RGBCamera",
        "filename": "step0.camera.png",
        "dimension": [64.0, 48.0],
        "projection": "Perspective",
        "matrix": [m11 * 48 / 64, 0, 0, 0, m11, 0, 0, 0, -1.0006],
        "annotations": [
            {
                "@type": BOX3D,
                "values": [
                    {"instanceId": 1, "labelName": "cube", "translation": [0.1, -0.05, 1.0], "rotation": [0, 0, 0, 1]}
                ],
            }
        ],
    }
    (sequence / "step0.frame_data.json").write_text(json.dumps({"frame": 0, "captures": [capture]}))
    assert locate_dataset(tmp_path / "export") == ("solo", tmp_path / "export" / "solo")
    tiny_config["data"]["train"]["root"] = str(tmp_path / "export")
    example = TrainDataset(validate_config(tiny_config))[0]
    fx, fy, cx, cy = intrinsics_from_fov(60.0, 64, 48)
    np.testing.assert_allclose(example["camera"], [fx / 2, fy * 32 / 48, 16, 16], rtol=1e-6)
    assert example["image"].shape == (32, 32, 3)
