"""`cubepose generate`: the OpenGL renderer, both layouts, reproducibility, resuming, presets."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import BIN
from cubepose.cli import main
from cubepose.config import validate_config
from cubepose.data import TrainDataset
from cubepose.data.legacy import read_legacy
from cubepose.data.shards import MANIFEST
from cubepose.geometry.camera import Camera
from cubepose.geometry.object import Box
from cubepose.geometry.projection import project_with_intrinsics, transform_points
from cubepose.geometry.rotations import quaternion_to_matrix
from cubepose.synth.generate import GenerationOptions, generate_dataset, scene_options
from cubepose.synth.gl_renderer import GLRenderer
from cubepose.synth.scene import PRESET_CAMERAS, PRESETS, sample_scene

CUBE_SIZE = Box().dimensions[0]  # the config's default cube


def files_of(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def same_files(a: Path, b: Path) -> bool:
    left, right = files_of(a), files_of(b)
    return left.keys() == right.keys() and all(filecmp.cmp(left[k], right[k], shallow=False) for k in left)


@pytest.mark.parametrize("layout", ["legacy", "solo"])
def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path, layout):
    common = ["--count", "70", "--seed", "5", "--image-size", "40", "--format", layout]
    assert main(["generate", str(tmp_path / "a"), *common, "--workers", "1"]) == 0
    assert main(["generate", str(tmp_path / "b"), *common, "--workers", "2"]) == 0  # 3 tasks over 2 processes
    assert same_files(tmp_path / "a", tmp_path / "b")
    assert len([k for k in files_of(tmp_path / "a") if k.endswith(".png")]) == 70
    main(["generate", str(tmp_path / "c"), *common[:3], "6", *common[4:]])
    assert not same_files(tmp_path / "a", tmp_path / "c")


def test_rerun_renders_only_what_is_missing(tmp_path):
    options = GenerationOptions(count=12, seed=2, image_size=32, format="solo")
    generate_dataset(tmp_path / "fresh", options)
    root = generate_dataset(tmp_path / "resumed", options)
    (root / "sequence.3" / "step0.camera.png").unlink()
    (root / "sequence.7" / "step0.frame_data.json").unlink()
    (root / "sequence.9" / ".step0.camera.png.x1.tmp").write_bytes(b"half an image")  # an interrupted write
    untouched = root / "sequence.5" / "step0.camera.png"
    before = untouched.stat().st_mtime_ns
    generate_dataset(root, options)
    assert untouched.stat().st_mtime_ns == before
    assert same_files(tmp_path / "fresh", root)


@pytest.mark.parametrize("layout", ["legacy", "solo"])
def test_projected_cube_corners_fall_on_the_rendered_cube(tmp_path, tiny_config, layout):
    """Read the labels and cameras back through the dataset; the true corners bound the cube's pixels."""
    options = GenerationOptions(count=8, seed=3, image_size=96, format=layout)
    generate_dataset(tmp_path, options)
    tiny_config["network"]["image_size"] = 96
    tiny_config["data"]["train"]["root"] = str(tmp_path)
    dataset = TrainDataset(validate_config(tiny_config))
    renderer = GLRenderer(96, 96)
    for index in range(len(dataset)):
        example = dataset[index]
        _, mask = renderer.render(sample_scene(np.random.default_rng([3, index, 0]), options.scene), mask=True)
        corners = transform_points(Box().corners(), example["translation"], example["quaternion"])
        pixels = project_with_intrinsics(corners, example["camera"])
        rows, cols = np.nonzero(mask)
        assert abs(pixels[:, 0].min() - cols.min()) < 1.5 and abs(pixels[:, 0].max() - (cols.max() + 1)) < 1.5
        assert abs(pixels[:, 1].min() - rows.min()) < 1.5 and abs(pixels[:, 1].max() - (rows.max() + 1)) < 1.5
        centre = project_with_intrinsics(example["translation"][None], example["camera"])[0].astype(int)
        assert mask[centre[1], centre[0]]
    renderer.release()


def test_yaw_turns_the_cube_about_the_table_normal_and_full_does_not():
    for index in range(20):
        scene = sample_scene(np.random.default_rng([0, index, 0]), PRESETS["default"])
        cube_up = quaternion_to_matrix(scene.cube.quaternion)[:, 1]
        np.testing.assert_allclose(cube_up, scene.up, atol=1e-9)  # standing on the table
        assert np.dot(scene.cube.translation - scene.table_centre, scene.up) == pytest.approx(CUBE_SIZE / 2)
    full = scene_options(rotation="full")
    tilted = [sample_scene(np.random.default_rng([0, i, 0]), full) for i in range(20)]
    assert max(abs(np.dot(quaternion_to_matrix(s.cube.quaternion)[:, 1], s.up)) for s in tilted) < 0.999


def test_ur3_preset_places_the_cube_in_unitys_cell_within_the_arms_reach():
    """Camera 0.97 m above the table top and 1.91 m behind the arm's base, pitched 13-17 deg down; the cube within
    0.2-0.4 m of the base on the table, 1.7-2.5 m away, its labels carrying the camera's pitch."""
    options = replace(PRESETS["ur3"], camera=PRESET_CAMERAS["ur3"])
    scenes = [sample_scene(np.random.default_rng([1, i, 0]), options) for i in range(50)]
    depths = np.array([s.cube.translation[2] for s in scenes])
    tilts = np.degrees(np.arcsin([-s.up[2] for s in scenes]))  # table normal leans towards the camera
    assert 1.7 <= depths.min() and depths.max() <= 2.5
    assert 13 - 1e-6 <= tilts.min() and tilts.max() <= 17 + 1e-6
    for scene in scenes:
        (base,) = scene.fixtures  # the arm's base, a cylinder standing on the table
        assert base.shape == "cylinder" and np.allclose(quaternion_to_matrix(base.quaternion)[:, 1], scene.up)
        apart = scene.cube.translation - base.translation
        along_table = apart - (apart @ scene.up) * scene.up
        assert 0.2 - 1e-9 <= np.linalg.norm(along_table) <= 0.4 + 1e-9
        camera_height = -(base.translation - base.size[1] / 2 * scene.up) @ scene.up  # above the table top
        assert camera_height == pytest.approx(1.74 - 0.77)
        cube_up = quaternion_to_matrix(scene.cube.quaternion)[:, 1]
        np.testing.assert_allclose(cube_up, scene.up, atol=1e-9)  # pitched with the camera, turned about the normal
    narrow = replace(options, camera=Camera.from_values((96, 64, 160, 160, 48, 32)))  # 23 deg: little of the reach
    for index in range(20):
        cube = sample_scene(np.random.default_rng([2, index, 0]), narrow).cube.translation
        assert np.all(np.abs(cube[:2] / cube[2] - [0, 0]) <= np.array([48, 32]) / 160 * 0.6 + 1e-9)


def test_user_backgrounds_show_behind_the_scene(tmp_path):
    scene = sample_scene(np.random.default_rng([4, 0, 0]), PRESETS["default"], backgrounds=1)
    scene = replace(scene, table_size=0.0, distractors=[], noise=0.0, blur=0.0)  # only the cube before it
    renderer = GLRenderer(64, 64, backgrounds=[np.full((8, 8, 3), (250, 20, 30), dtype=np.uint8)])
    image, mask = renderer.render(scene, mask=True)
    renderer.release()
    np.testing.assert_allclose(image[~mask].mean(axis=0), [250, 20, 30], atol=2)
    Image.fromarray(np.full((4, 4, 3), 9, dtype=np.uint8)).save(tmp_path / "bg.png")
    assert main(["generate", str(tmp_path / "out"), "--count", "2", "--backgrounds", str(tmp_path)]) == 0
    assert main(["generate", str(tmp_path / "none"), "--count", "2", "--backgrounds", str(tmp_path / "out")]) == 2


def test_bad_options_are_clear_errors(tmp_path, caplog):
    assert main(["generate", str(tmp_path), "--count", "0"]) == 2
    assert main(["generate", str(tmp_path), "--count", "2", "--fov", "50", "70"]) == 2  # legacy: one camera
    assert "needs --format solo" in caplog.text
    assert main(["generate", str(tmp_path / "s"), "--count", "2", "--fov", "50", "70", "--format", "solo"]) == 0
    assert main(["generate", str(tmp_path), "--count", "2", "--preset", "studio"]) == 2


def test_captures_are_split_into_files_of_150(tmp_path):
    main(["generate", str(tmp_path), "--count", "151", "--image-size", "16"])
    files = sorted(tmp_path.glob("Dataset*/captures_*.json"))
    assert [f.name for f in files] == ["captures_000.json", "captures_001.json"]
    assert len(json.loads(files[1].read_text())["captures"]) == 1
    assert len(read_legacy(tmp_path)) == 151


def test_missing_opengl_libraries_stop_with_a_message_naming_them(tmp_path):
    env = {**os.environ, "GLCONTEXT_LINUX_LIBEGL": str(tmp_path / "libEGL.so.1")}  # glcontext's own override
    result = subprocess.run(
        [str(BIN / "cubepose"), "generate", str(tmp_path / "out"), "--count", "2", "--workers", "1"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2
    assert "cannot create a headless OpenGL context" in result.stderr and "apt-get install libegl1" in result.stderr


def test_sensor_noise_has_the_sampled_std_and_blur_smooths():
    scene = sample_scene(np.random.default_rng([5, 0, 0]), PRESETS["default"])
    renderer = GLRenderer(96, 96)
    clean = renderer.render(replace(scene, noise=0.0, blur=0.0)).astype(float)
    noisy = renderer.render(replace(scene, noise=8.0, blur=0.0)).astype(float)
    blurred = renderer.render(replace(scene, noise=0.0, blur=1.0)).astype(float)
    renderer.release()
    inside = (clean > 30) & (clean < 225)  # away from clipping
    assert np.std((noisy - clean)[inside]) == pytest.approx(8.0, rel=0.1)
    assert abs(np.mean((noisy - clean)[inside])) < 0.5

    def roughness(image):
        return np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean()

    assert roughness(blurred) < 0.8 * roughness(clean)


def test_a_folder_is_never_mixed_with_other_options(tmp_path, caplog):
    assert main(["generate", str(tmp_path / "a"), "--count", "3", "--image-size", "16"]) == 0
    assert main(["generate", str(tmp_path / "a"), "--count", "5", "--image-size", "16"]) == 0  # extends it
    assert len(read_legacy(tmp_path / "a")) == 5
    assert main(["generate", str(tmp_path / "a"), "--count", "5", "--image-size", "16", "--seed", "2"]) == 2
    assert "generated with other options (seed differ)" in caplog.text
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["generate", str(tmp_path / "mine"), "--count", "2"]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


# What a default run recorded before --camera and --faces existed (checked against that code's output): new
# options left at their defaults add nothing, so folders made then still resume.
DEFAULT_MANIFEST = {
    "seed": 0,
    "image_size": 128,
    "format": "legacy",
    "scene": {
        "distance": [0.3, 0.55],
        "tilt_deg": [20.0, 50.0],
        "roll_deg": 3.0,
        "vertical_fov_deg": [60.0, 60.0],
        "margin": 0.6,
        "distractors": [0, 3],
        "table_size": 4.0,
        "rotation": "yaw",
        "symmetric": False,
        "noise": [0.0, 6.0],
        "blur": [0.0, 0.7],
    },
    "backgrounds": None,
    "shard": 0,
    "shards": 1,
}


def test_a_default_run_records_its_options_as_before(tmp_path):
    assert main(["generate", str(tmp_path / "a"), "--count", "1", "--workers", "1"]) == 0
    assert (tmp_path / "a" / MANIFEST).read_text() == json.dumps(DEFAULT_MANIFEST, indent=1)
    assert main(["generate", str(tmp_path / "b"), "--count", "1", "--workers", "1", "--faces", "plain"]) == 0
    plain = {**DEFAULT_MANIFEST, "scene": {**DEFAULT_MANIFEST["scene"], "symmetric": True}}  # as --symmetric did
    assert (tmp_path / "b" / MANIFEST).read_text() == json.dumps(plain, indent=1)


def test_wireframe_of_the_true_pose_traces_the_rendered_cube():
    from cubepose.evaluation.overlay import TRUE_COLOUR, draw_cubes
    from cubepose.geometry.projection import intrinsics_from_fov

    renderer = GLRenderer(128, 128)
    scenes = [sample_scene(np.random.default_rng([6, index, 0]), PRESETS["default"]) for index in range(4)]
    masks = np.stack([renderer.render(scene, mask=True)[1] for scene in scenes])
    renderer.release()
    canvas = draw_cubes(
        np.zeros((4, 128, 128, 3), np.uint8),
        intrinsics_from_fov(np.array([s.vertical_fov_deg for s in scenes]), 128, 128),
        np.stack([s.cube.translation for s in scenes]),
        np.stack([s.cube.quaternion for s in scenes]),
        TRUE_COLOUR,
    )
    drawn = np.all(canvas == TRUE_COLOUR, axis=-1)
    near_cube = np.stack([np.asarray(Image.fromarray(m).filter(ImageFilter.MaxFilter(5))) for m in masks])  # 2 px
    assert np.all(drawn.sum(axis=(1, 2)) > 40) and not np.any(drawn & ~near_cube)
