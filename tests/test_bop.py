"""The BOP format: `cubepose generate --format bop` writes what BOP's tools read (hand-checked projections, units,
models_info.json, the PLY), the reader gives back the generator's poses and cameras, bad input is skipped or
refused naming the fix, and a BOP dataset trains and evaluates through the real edflow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import BIN, REPO, load_configs
from cubepose.config import validate_config
from cubepose.data import TrainDataset
from cubepose.data.bop import read_bop
from cubepose.data.formats import read_dataset
from cubepose.errors import DatasetError
from cubepose.geometry.object import box_corners
from cubepose.geometry.projection import project_with_intrinsics, transform_points
from cubepose.synth.generate import GenerationOptions, generate_dataset, scene_options


def generated(root: Path, fmt: str, faces: str = "die", **options) -> Path:
    scene = scene_options(faces=faces, objects=(1, 2))
    generate_dataset(root, GenerationOptions(count=6, seed=4, image_size=40, format=fmt, scene=scene, **options))
    return root


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """The same six scenes (1-2 cubes each) as SOLO and as BOP, plus a BOP dataset of a plain (symmetric) cube."""
    root = tmp_path_factory.mktemp("bop")
    return {
        "solo": generated(root / "solo", "solo"),
        "bop": generated(root / "bop", "bop"),
        "plain": generated(root / "plain", "bop", faces="plain", bop_split="test"),
    }


@pytest.fixture
def bop(datasets, tmp_path) -> Path:
    return Path(shutil.copytree(datasets["bop"], tmp_path / "bop"))


def scene_file(root: Path, name: str) -> tuple[Path, dict]:
    path = root / "train" / "000000" / name
    return path, json.loads(path.read_text())


def test_the_reader_gives_back_the_generators_poses_cameras_and_images(datasets):
    solo = read_dataset(datasets["solo"], max_instances=2)
    bop = read_dataset(datasets["bop"], max_instances=2)
    assert bop.format == "bop" and len(bop) == len(solo) == 6
    np.testing.assert_array_equal(bop.instance_counts, solo.instance_counts)
    present = solo.present
    np.testing.assert_allclose(bop.translations[present], solo.translations[present], atol=1e-6)
    same_rotation = np.abs((bop.quaternions[present] * solo.quaternions[present]).sum(axis=-1))
    np.testing.assert_allclose(same_rotation, 1.0, atol=1e-5)
    np.testing.assert_allclose(bop.cameras, solo.cameras, atol=1e-6)
    np.testing.assert_allclose(bop.object_sizes[present], 0.1)  # from models_info.json
    for bop_image, solo_image in zip(bop.image_paths, solo.image_paths, strict=True):
        assert Path(bop_image).read_bytes() == Path(solo_image).read_bytes()


def test_bop_numbers_project_the_box_where_cubepose_does_by_opencvs_formula(datasets):
    """Hand check of the conventions: s [u, v, 1] = K (R p + t) with p in mm, pixel centres on integers."""
    solo = read_dataset(datasets["solo"], max_instances=2)
    _, ground_truth = scene_file(datasets["bop"], "scene_gt.json")
    _, cameras = scene_file(datasets["bop"], "scene_camera.json")
    corners_mm = box_corners((100.0, 100.0, 100.0)) * [1, -1, 1]  # cubepose's corners in BOP's model frame (y mirrored)
    for image in range(6):
        k = np.array(cameras[str(image)]["cam_K"]).reshape(3, 3)
        for slot, gt in enumerate(ground_truth[str(image)]):
            assert gt["obj_id"] == 1
            rotation, translation = np.array(gt["cam_R_m2c"]).reshape(3, 3), np.array(gt["cam_t_m2c"])
            camera_points = corners_mm @ rotation.T + translation
            projected = camera_points @ k.T
            bop_pixels = projected[:, :2] / projected[:, 2:]
            points = transform_points(
                box_corners((0.1,) * 3), solo.translations[image, slot], solo.quaternions[image, slot]
            )
            cubepose_pixels = project_with_intrinsics(points, solo.cameras[image])
            np.testing.assert_allclose(bop_pixels, cubepose_pixels - 0.5, atol=1e-3)  # corner by corner
            assert translation[2] == pytest.approx(solo.translations[image, slot, 2] * 1000, abs=1e-3)


def test_models_info_and_the_ply_describe_the_box_and_its_symmetries(datasets):
    for folder in ("models", "models_eval"):
        info = json.loads((datasets["bop"] / folder / "models_info.json").read_text())["1"]
        assert info["diameter"] == pytest.approx(100 * np.sqrt(3))
        assert (info["min_x"], info["size_x"], info["size_z"]) == (-50.0, 100.0, 100.0)
        assert "symmetries_discrete" not in info  # die faces: no symmetry
    plain = json.loads((datasets["plain"] / "models" / "models_info.json").read_text())["1"]
    matrices = np.array(plain["symmetries_discrete"]).reshape(-1, 4, 4)
    assert len(matrices) == 23  # the cube's 24 rotations but the identity
    np.testing.assert_allclose(matrices[:, :3, 3], 0)  # about the centre
    np.testing.assert_allclose(
        matrices[:, :3, :3] @ np.swapaxes(matrices[:, :3, :3], 1, 2), np.tile(np.eye(3), (23, 1, 1)), atol=1e-6
    )
    lines = (datasets["bop"] / "models" / "obj_000001.ply").read_text().splitlines()
    body = lines[lines.index("end_header") + 1 :]
    vertices = np.array([[float(v) for v in line.split()] for line in body[:8]])
    faces = np.array([[int(v) for v in line.split()] for line in body[8:]])
    np.testing.assert_allclose(np.abs(vertices), 50.0)
    assert faces.shape == (12, 4) and (faces[:, 0] == 3).all()
    a, b, c = (vertices[faces[:, i]] for i in (1, 2, 3))
    normals = np.cross(b - a, c - a)
    assert ((normals * (a + b + c)).sum(axis=1) > 0).all()  # every triangle faces outwards
    targets = json.loads((datasets["bop"] / "test_targets_bop19.json").read_text())
    assert sum(t["inst_count"] for t in targets) == int(
        read_dataset(datasets["bop"], max_instances=2).instance_counts.sum()
    )
    assert (datasets["plain"] / "test" / "000000" / "rgb" / "000005.png").is_file()  # --bop-split test


def config_for(root: Path, **object_settings) -> dict:
    config = load_configs("base.yaml", "cpu.yaml", "keypoints_cpu.yaml", "several.yaml")
    config["network"]["image_size"] = 32
    config["data"].setdefault("train", {})["root"] = str(root)
    config["data"]["max_instances"] = 2
    config["object"].update(object_settings)
    return validate_config(config)


def test_declared_symmetries_must_match_object_symmetries(datasets):
    with pytest.raises(DatasetError, match=r'declares 24 symmetries .* set object/symmetries: "cube"'):
        TrainDataset(config=config_for(datasets["plain"]))
    assert len(TrainDataset(config=config_for(datasets["plain"], symmetries="cube"))) == 6
    assert len(TrainDataset(config=config_for(datasets["bop"]))) == 6  # no symmetry declared, none set


def test_bad_ground_truth_and_cameras_are_skipped_by_reason(bop):
    path, ground_truth = scene_file(bop, "scene_gt.json")
    ground_truth["0"][0]["cam_R_m2c"] = [2.0] + ground_truth["0"][0]["cam_R_m2c"][1:]  # not a rotation
    ground_truth["1"][0]["cam_t_m2c"] = ["a", 0, 1]
    ground_truth["2"].append({**ground_truth["2"][0], "obj_id": 7})  # another object
    path.write_text(json.dumps(ground_truth))
    camera_path, cameras = scene_file(bop, "scene_camera.json")
    cameras["3"]["cam_K"] = [0.0] * 9
    camera_path.write_text(json.dumps(cameras))
    (bop / "train" / "000000" / "rgb" / "000004.png").unlink()
    index = read_bop(bop, max_instances=2)
    assert len(index) == 1 and index.skipped == {
        "rotation not a rotation matrix": 1,
        "pose not numbers": 1,
        "several labels (set data/obj_id)": 1,
        "no usable camera (cam_K)": 1,
        "missing image": 1,
    }
    assert len(read_bop(bop, max_instances=2, obj_id=1)) == 2  # the image with object 7 too
    with pytest.raises(DatasetError, match="no entry for obj_id 7 .*set data/obj_id to one"):
        read_bop(bop, max_instances=2, obj_id=7)


def test_images_that_leave_the_split_are_never_read(bop, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.move(bop / "train" / "000000" / "rgb", outside)
    os.symlink(outside, bop / "train" / "000000" / "rgb")
    with pytest.raises(DatasetError, match="6 outside the dataset"):
        read_bop(bop, max_instances=2)


def test_malformed_files_and_ambiguous_roots_are_refused_naming_the_fix(bop):
    with pytest.raises(DatasetError, match="leave data/instance_id null"):
        read_bop(bop, instance_id=1)
    with pytest.raises(DatasetError, match="pick the object by data/obj_id: leave data/label_name null"):
        read_dataset(bop, label_name="cube_position")
    shutil.copytree(bop / "train", bop / "test")
    with pytest.raises(DatasetError, match="holds the BOP splits test, train; point data/<split>/root at one"):
        read_bop(bop)
    assert len(read_bop(bop / "test", max_instances=2)) == 6  # a split folder: models/ from its parent
    path, _ = scene_file(bop, "scene_gt.json")
    path.write_text("{")
    with pytest.raises(DatasetError, match="malformed JSON in .*scene_gt.json"):
        read_bop(bop / "train")


def test_a_bop_dataset_trains_and_evaluates_through_edflow(datasets, tmp_path):
    configs = [str(REPO / "configs" / name) for name in ("base.yaml", "cpu.yaml", "keypoints_cpu.yaml", "several.yaml")]
    overrides = ["--network/image_size", "32", "--batch_size", "3", "--test_batch_size", "3", "--num_steps", "2"]
    overrides += ["--n_data_processes", "1", "--log_freq", "1", "--data/max_instances", "2"]
    overrides += ["--data/train/root", str(datasets["bop"]), "--data/validation/root", str(datasets["bop"])]
    result = subprocess.run(
        [str(BIN / "edflow"), "-n", "bop", "-b", *configs, "-t", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (metrics,) = tmp_path.glob("logs/*_bop/eval/*/*/metrics.json")
    values = json.loads(metrics.read_text())
    instances = int(read_dataset(datasets["bop"], max_instances=2).instance_counts.sum())
    assert values["instances"] == instances and 0 <= values["ar_mssd"] <= 1 and 0 <= values["ar_mspd"] <= 1
    rows = (metrics.parent / "bop_results.csv").read_text().splitlines()
    assert rows[0] == "scene_id,im_id,obj_id,score,R,t,time"
    assert {row.split(",")[0] for row in rows[1:]} <= {"0"} and all(row.endswith(",-1") for row in rows[1:])
