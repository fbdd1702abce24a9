"""The object is a value from the config (``object/dimensions``): losses, metrics, the crop window,
overlays and the generator all measure and draw the configured box, and the default keeps every number."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cubepose.cli import main
from cubepose.config import defaults, validate_config
from cubepose.data import TrainDataset
from cubepose.engine.callbacks import evaluation_of
from cubepose.errors import ConfigError, DatasetError
from cubepose.evaluation.metrics import add_distance, pose_dataset_metrics
from cubepose.evaluation.overlay import TRUE_COLOUR, draw_cubes
from cubepose.geometry.object import Box, box_corners
from cubepose.losses import Criterion
from cubepose.models.crop import cube_windows
from cubepose.synth.generate import GenerationOptions, generate_dataset, scene_options
from cubepose.synth.gl_renderer import GLRenderer
from cubepose.synth.scene import PRESETS, sample_scene

IDENTITY = [0.0, 0.0, 0.0, 1.0]
HALF_TURN_Z = [0.0, 0.0, 1.0, 0.0]
DOUBLE = [0.2, 0.2, 0.2]


def config_with(dimensions: list[float], **tree) -> dict:
    return validate_config({"object": {"dimensions": dimensions}, **tree})


def test_the_default_box_is_the_schema_default_cube_with_its_old_numbers():
    box = Box()
    assert list(box.dimensions) == defaults()["object"]["dimensions"] == [0.1, 0.1, 0.1]
    assert Box.from_config(validate_config({})) == box == Box.from_config({})  # a config saved before the key
    np.testing.assert_array_equal(box.corners(), box_corners((0.1, 0.1, 0.1)))
    assert box.radius == 0.1 * np.sqrt(3) / 2 and box.diameter == 0.1 * np.sqrt(3)  # bit for bit


def test_a_box_has_its_own_edge_per_axis():
    box = Box.from_config(config_with([0.2, 0.1, 0.4]))
    assert box.dimensions == (0.2, 0.1, 0.4)
    np.testing.assert_allclose(np.abs(box.corners()), np.tile([0.1, 0.05, 0.2], (8, 1)))
    assert box.diameter == pytest.approx(np.sqrt(0.04 + 0.01 + 0.16)) and box.radius == box.diameter / 2
    with pytest.raises(ValueError, match="3 finite edge lengths"):
        Box((0.1, 0.0, 0.1))


@pytest.mark.parametrize(
    ("dimensions", "message"),
    [
        ([0.1, -1, 0.1], r"object/dimensions: -1.0 is not a number in \[1e-06, inf\)"),
        ([0.1, 0.1], r"object/dimensions: expected a list of 3 values, got \[0.1, 0.1\]"),
        ([0.1, ".nan", 0.1], r"object/dimensions: nan is not a number"),
        ("0.1", r"object/dimensions: expected a list"),
    ],
)
def test_config_refuses_dimensions_that_are_no_box(dimensions, message):
    with pytest.raises(ConfigError, match=message):
        config_with(dimensions)


def test_config_takes_whole_numbers_as_metres():
    assert config_with([1, 2, 1])["object"]["dimensions"] == [1.0, 2.0, 1.0]


def test_a_cube_twice_as_large_doubles_the_add_loss_of_a_turn():
    true = torch.tensor([[0, 0, 1.0, *IDENTITY]])
    turned = {"translation": true[:, :3], "quaternion": torch.tensor([HALF_TURN_Z])}
    targets = {"translation": true[:, :3], "quaternion": true[:, 3:]}
    losses = {"pose": {"type": "add", "weight": 1.0}}
    default = Criterion.from_config(validate_config({"losses": losses}))(turned, targets)["pose"]
    double = Criterion.from_config(config_with(DOUBLE, losses=losses))(turned, targets)["pose"]
    torch.testing.assert_close(default, torch.tensor([0.1 * np.sqrt(2)], dtype=torch.float32))
    torch.testing.assert_close(double, 2 * default)


def test_a_cube_twice_as_large_doubles_add_and_its_accuracy_threshold():
    t = np.array([[0.0, 0.0, 1.0]])
    q = np.array([IDENTITY])
    assert add_distance(t, np.array([HALF_TURN_Z]), t, q, Box(tuple(DOUBLE))) == pytest.approx(0.2 * np.sqrt(2))
    # a 2.5 cm shift: above 10% of the default diagonal (1.73 cm), below that of the doubled cube (3.46 cm)
    shifted = t + [0.025, 0, 0]
    assert pose_dataset_metrics(shifted, t, q, q)["accuracy_add_10pct_diagonal"] == 0.0
    assert pose_dataset_metrics(shifted, t, q, q, box=Box(tuple(DOUBLE)))["accuracy_add_10pct_diagonal"] == 1.0


def test_evaluation_callbacks_measure_the_configured_object():
    t = np.array([[0.0, 0.0, 1.0]])
    q = np.array([IDENTITY])
    labels = {"translation_pred": t + [0.025, 0, 0], "translation_true": t, "quaternion_pred": q, "quaternion_true": q}
    for dimensions, accuracy in (([0.1, 0.1, 0.1], 0.0), (DOUBLE, 1.0)):
        evaluated = evaluation_of("eval/1", SimpleNamespace(labels=labels), config_with(dimensions))
        assert evaluated.pose["accuracy_add_10pct_diagonal"] == accuracy
        assert evaluated.box == Box(tuple(dimensions))


CROP_LOSSES = {
    "translation": {"type": "mse", "weight": 1.0},
    "orientation": {"type": "mse", "weight": 1.0},
    "window": {"type": "mse", "weight": 1.0},
}


def test_a_cube_twice_as_large_gets_a_crop_window_twice_as_large_at_the_same_distance():
    translation = torch.tensor([[0.05, -0.02, 0.4], [0.0, 0.0, 1.5]])
    camera = torch.tensor([[110.0, 110.0, 64.0, 64.0]]).expand(2, 4)
    default = cube_windows(translation, camera, 128, 1.3)
    double = cube_windows(translation, camera, 128, 1.3, Box(tuple(DOUBLE)))
    torch.testing.assert_close(double[:, :2], default[:, :2])  # same centre
    torch.testing.assert_close(double[:, 2].exp(), 2 * default[:, 2].exp())  # twice the half side
    # through the config: the window loss of the default window against the doubled cube's is (log 2)^2 / 3
    network = {"backbone": "small_cnn", "head": "pooled", "image_size": 128, "crop": {"active": True, "margin": 1.3}}
    config = config_with(DOUBLE, network=network, losses=dict(CROP_LOSSES))
    targets = {"translation": translation, "quaternion": torch.tensor([IDENTITY] * 2), "camera": camera}
    predictions = {**targets, "window": default}
    values = Criterion.from_config(config)(predictions, targets)
    torch.testing.assert_close(values["window"], torch.full((2,), float(np.log(2) ** 2 / 3)))


def test_the_wireframe_of_a_larger_box_spans_more_pixels():
    camera = np.array([[100.0, 100.0, 50.0, 50.0]])
    pose = ([[0, 0, 1.0]], np.array([IDENTITY]))
    spans = []
    for box in (Box(), Box((0.2, 0.1, 0.1))):
        drawn = np.all(
            draw_cubes(np.zeros((1, 100, 100, 3), np.uint8), camera, *pose, TRUE_COLOUR, box=box)[0] == TRUE_COLOUR,
            axis=-1,
        )
        rows, cols = np.nonzero(drawn)
        spans.append((cols.max() - cols.min(), rows.max() - rows.min()))
    (width, height), (wide_width, wide_height) = spans
    assert wide_height == height and wide_width == pytest.approx(2 * width, abs=1)  # x doubled, y kept


def test_generated_cubes_of_twice_the_edge_cover_about_four_times_the_pixels():
    renderer = GLRenderer(96, 96)
    double = scene_options(dimensions=tuple(DOUBLE))
    areas = []
    for options in (PRESETS["default"], double):
        scenes = [sample_scene(np.random.default_rng([3, index, 0]), options) for index in range(4)]
        areas.append(np.array([renderer.render(scene, mask=True)[1].sum() for scene in scenes]))
    renderer.release()
    # Same poses (only the table moves down). Per scene 3-4.6: perspective, and the larger cube may leave the view.
    ratio = areas[1].sum() / areas[0].sum()
    assert 3.4 < ratio < 4.6, areas


@pytest.mark.parametrize("layout", ["legacy", "solo"])
def test_generate_records_the_object_dimensions_and_keeps_them_apart(tmp_path, layout):
    common = ["--count", "2", "--image-size", "32", "--workers", "1", "--format", layout]
    assert main(["generate", str(tmp_path / "double"), *common, "--object-dimensions", "0.2", "0.2", "0.2"]) == 0
    assert main(["generate", str(tmp_path / "default"), *common]) == 0
    assert sizes_recorded(tmp_path / "double") == [DOUBLE] * 2
    assert sizes_recorded(tmp_path / "default") == [[0.1, 0.1, 0.1]] * 2
    manifest = json.loads((tmp_path / "default" / ".cubepose-generate.json").read_text())
    assert "dimensions" not in manifest["scene"]  # the default is recorded as before the option existed
    # a folder of one object is never extended with another
    assert main(["generate", str(tmp_path / "default"), *common, "--object-dimensions", "0.2", "0.2", "0.2"]) == 2


def sizes_recorded(root: Path) -> list[list[float]]:
    """The 3D box sizes a generated dataset's label files record, in either layout."""
    sizes = []
    for path in sorted(root.rglob("*.json")):
        text = json.loads(path.read_text())
        captures = text.get("captures", [])
        for capture in captures:
            for annotation in capture.get("annotations", []):
                sizes += [value["size"] for value in annotation.get("values", []) if "size" in value]
    return sizes


@pytest.mark.parametrize(
    ("dimensions", "message"),
    [
        (["0.1", "0", "0.1"], "--object-dimensions: a box takes 3 finite edge lengths"),
        (["0.1", "nan", "0.1"], "--object-dimensions: a box takes 3 finite edge lengths"),
        (["0.5", "0.5", "0.5"], "crosses the renderer's near plane .* give --min-distance above 0.483"),
    ],
)
def test_generate_refuses_boxes_it_cannot_render(tmp_path, caplog, dimensions, message):
    out = tmp_path / "out"
    assert main(["generate", str(out), "--count", "1", "--object-dimensions", *dimensions]) == 2
    assert re.search(message, caplog.text) and not out.exists()


def test_a_split_labelled_with_another_box_is_refused_naming_the_size_to_set(tmp_path, tiny_config):
    root = tmp_path / "big"
    options = GenerationOptions(count=4, seed=1, image_size=48, scene=scene_options(dimensions=(0.2, 0.2, 0.2)))
    generate_dataset(root, options)
    tiny_config["data"]["train"]["root"] = str(root)
    with pytest.raises(DatasetError, match=re.escape("4 of 4 labels record a box of [0.2, 0.2, 0.2] m, but")) as err:
        TrainDataset(validate_config(tiny_config))
    assert "set object/dimensions: [0.2, 0.2, 0.2] (edflow: --object/dimensions [0.2,0.2,0.2])" in str(err.value)
    tiny_config["object"] = {"dimensions": [0.2, 0.2, 0.2]}
    assert len(TrainDataset(validate_config(tiny_config))) == 4
