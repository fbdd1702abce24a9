"""The synthetic generator: legacy layout, reproducible bytes, the cube where the label says."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pytest

from cubepose.cli import main
from cubepose.config import validate_config
from cubepose.data import TrainDataset
from cubepose.data.images import to_uint8
from cubepose.data.legacy import read_legacy
from cubepose.geometry import project_with_intrinsics
from cubepose.synth.render import FACE_COLOURS


def test_same_seed_gives_identical_files(tmp_path):
    for name in ("a", "b"):
        assert main(["generate", str(tmp_path / name), "--count", "4", "--seed", "5", "--image-size", "40"]) == 0
    comparison = filecmp.dircmp(tmp_path / "a", tmp_path / "b")
    assert comparison.left_list == comparison.right_list
    files = [p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()]
    assert len(files) == 6  # 4 images, captures_000.json, annotation_definitions.json
    assert all(filecmp.cmp(tmp_path / "a" / f, tmp_path / "b" / f, shallow=False) for f in files)
    main(["generate", str(tmp_path / "c"), "--count", "4", "--seed", "6", "--image-size", "40"])
    assert not filecmp.cmp(next((tmp_path / "a").rglob("rgb_2.png")), next((tmp_path / "c").rglob("rgb_2.png")))


@pytest.mark.parametrize("layout", ["legacy", "solo"])
def test_labelled_cube_centre_projects_onto_the_cube_in_the_resized_image(tmp_path, tiny_config, layout):
    """Render at 96 px, read back at 48 px: the example's camera projects the cube centre onto a cube face."""
    main(["generate", str(tmp_path), "--count", "6", "--seed", "3", "--image-size", "96", "--format", layout])
    tiny_config["network"]["image_size"] = 48
    tiny_config["data"]["train"]["root"] = str(tmp_path)
    dataset = TrainDataset(validate_config(tiny_config))
    for i in range(len(dataset)):
        example = dataset[i]
        u, v = project_with_intrinsics(example["translation"][None], example["camera"])[0].astype(int)
        pixel = to_uint8(example["image"])[v, u].astype(float)
        # shading scales a face colour, so the pixel points in the direction of one face colour
        cosines = FACE_COLOURS @ pixel / (np.linalg.norm(FACE_COLOURS, axis=1) * np.linalg.norm(pixel))
        assert cosines.max() > 0.98, (i, pixel)


def test_count_must_be_positive(tmp_path):
    assert main(["generate", str(tmp_path), "--count", "0"]) == 2


def test_captures_are_split_into_files_of_150(tmp_path):
    main(["generate", str(tmp_path), "--count", "151", "--image-size", "16"])
    files = sorted(tmp_path.glob("Dataset*/captures_*.json"))
    assert [f.name for f in files] == ["captures_000.json", "captures_001.json"]
    assert len(json.loads(files[1].read_text())["captures"]) == 1


def test_yaw_rotates_about_the_vertical_axis_only_and_full_does_not(tmp_path):
    main(["generate", str(tmp_path / "yaw"), "--count", "8", "--image-size", "16"])
    yaw = read_legacy(tmp_path / "yaw").quaternions
    np.testing.assert_allclose(yaw[:, [0, 2]], 0.0, atol=1e-6)
    assert np.ptp(yaw[:, 1]) > 0.5  # a spread of yaw angles
    main(["generate", str(tmp_path / "full"), "--count", "8", "--image-size", "16", "--rotation", "full"])
    assert np.abs(read_legacy(tmp_path / "full").quaternions[:, [0, 2]]).max() > 0.1
