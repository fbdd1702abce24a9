"""`cubepose generate` with the user's camera and faces: rendered, written, read back and inspected.

Real files and the real OpenGL renderer throughout: a non-square camera with an off-centre principal
point and fx != fy in both layouts, `--camera-from`, the ur3 preset's camera, `--faces`, and the options
refused before anything is written.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import load_configs
from cubepose.cli import main
from cubepose.config import validate_config
from cubepose.data import TrainDataset
from cubepose.data.formats import read_dataset
from cubepose.data.shards import MANIFEST
from cubepose.evaluation.overlay import TRUE_COLOUR, draw_cubes
from cubepose.geometry.camera import Camera
from cubepose.geometry.projection import intrinsics_from_fov, resize_intrinsics
from cubepose.geometry.rotations import axis_angle_quaternions, quaternion_multiply, quaternion_to_matrix
from cubepose.synth.generate import GenerationOptions, face_atlas, scene_options
from cubepose.synth.gl_renderer import GLRenderer
from cubepose.synth.scene import sample_scene
from cubepose.synth.textures import FACE_NAMES, FACE_VIEWS, cube_atlas

CAMERA = Camera.from_values((96, 64, 70.0, 80.0, 40.0, 36.0))  # non-square, off-centre principal point, fx != fy
CAMERA_ARGS = ["--camera", *map(str, CAMERA.values())]
SOLID = [(230, 30, 30), (30, 200, 40), (40, 60, 230), (240, 220, 30), (210, 40, 210), (30, 210, 220)]


def generate(out: Path, *args: str) -> Path:
    """Run ``cubepose generate out args`` in this process with one worker; assert it succeeded."""
    assert main(["generate", str(out), "--workers", "1", *args]) == 0
    return out


def refused(out: Path, args: list[str], caplog: pytest.LogCaptureFixture) -> str:
    """Run ``cubepose generate out args``; assert exit 2 with one single-line error and nothing written; return it."""
    caplog.clear()
    assert main(["generate", str(out), "--count", "2", "--workers", "1", *args]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert not out.exists()
    return errors[0]


def flat_light(scene):
    """``scene`` lit by ambient white only, without noise or blur: rendered colours are the textures' own."""
    return replace(scene, ambient=np.ones(3), light_colour=np.zeros(3), noise=0.0, blur=0.0)


def solid_faces(folder: Path, colours=SOLID) -> list[str]:
    """Six solid-colour PNGs, one per face (+x -x +y -y +z -z)."""
    folder.mkdir(exist_ok=True)
    paths = []
    for name, colour in zip(FACE_NAMES, colours, strict=True):
        path = folder / f"face{name}.png"
        Image.new("RGB", (20, 30), colour).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("layout", ["legacy", "solo"])
def test_the_true_wireframe_traces_the_object_rendered_by_an_off_centre_camera(tmp_path, layout):
    """Labels and camera read back from the export put the box's wireframe within 1 px of its rendered mask."""
    root = generate(tmp_path / layout, "--count", "6", "--seed", "3", "--format", layout, *CAMERA_ARGS)
    index = read_dataset(root, camera={"vertical_fov": 20.0})  # a wrong data/camera: the recorded camera wins
    np.testing.assert_array_equal(index.cameras, np.tile(CAMERA.intrinsics, (6, 1)))
    np.testing.assert_array_equal(index.image_sizes, np.tile([96, 64], (6, 1)))
    assert Image.open(index.image_paths[0]).size == (96, 64)

    scene_ranges = scene_options(camera=CAMERA)
    renderer = GLRenderer(96, 64)
    masks = np.stack(
        [renderer.render(sample_scene(np.random.default_rng([3, i, 0]), scene_ranges), mask=True)[1] for i in range(6)]
    )
    renderer.release()
    canvas = draw_cubes(
        np.zeros((6, 64, 96, 3), np.uint8),
        index.cameras,
        index.translations[:, 0],
        index.quaternions[:, 0],
        TRUE_COLOUR,
    )
    drawn = np.all(canvas == TRUE_COLOUR, axis=-1)
    near_object = np.stack([np.asarray(Image.fromarray(m).filter(ImageFilter.MaxFilter(3))) for m in masks])  # 1 px
    assert np.all(drawn.sum(axis=(1, 2)) > 30) and not np.any(drawn & ~near_object)
    fx, fy, cx, cy = CAMERA.intrinsics
    u = cx + fx * index.translations[:, 0, 0] / index.translations[:, 0, 2]
    v = cy - fy * index.translations[:, 0, 1] / index.translations[:, 0, 2]
    assert all(masks[i, int(v[i]), int(u[i])] for i in range(6))  # the box's centre is inside its silhouette


@pytest.mark.parametrize("layout", ["legacy", "solo"])
def test_a_non_square_camera_is_scaled_per_axis_to_the_square_network_input(tmp_path, layout):
    root = generate(tmp_path / layout, "--count", "3", "--seed", "1", "--format", layout, *CAMERA_ARGS)
    config = load_configs("base.yaml", "cpu.yaml")
    config["network"]["image_size"] = 32
    for split in ("train", "validation", "test"):
        config.setdefault("data", {}).setdefault(split, {})["root"] = str(root)
    dataset = TrainDataset(validate_config(config))
    expected = [70 * 32 / 96, 80 * 32 / 64, 40 * 32 / 96, 36 * 32 / 64]
    np.testing.assert_allclose(dataset.labels["camera"], np.tile(expected, (3, 1)), rtol=1e-6)
    assert dataset[0]["image"].shape == (32, 32, 3)
    np.testing.assert_array_equal(dataset.labels["original_size"], np.tile([96, 64], (3, 1)))


def test_an_unusable_recorded_camera_falls_back_to_unitys_fields(tmp_path):
    root = generate(tmp_path / "solo", "--count", "2", "--format", "solo", *CAMERA_ARGS)
    frame = root / "sequence.1" / "step0.frame_data.json"
    document = json.loads(frame.read_text())
    assert document["captures"][0]["cubepose_intrinsics"] == [70.0, 80.0, 40.0, 36.0]
    document["captures"][0]["cubepose_intrinsics"] = [70.0, -80.0, 40.0, 36.0]
    frame.write_text(json.dumps(document))
    cameras = read_dataset(root).cameras
    np.testing.assert_array_equal(cameras[0], CAMERA.intrinsics)
    np.testing.assert_allclose(cameras[1], [70.0, 80.0, 48.0, 32.0])  # Unity's matrix: a centred camera


def test_resize_intrinsics_scales_each_axis_by_its_own_factor():
    """A point's pixel scales with the image, each axis on its own: resized intrinsics project it there."""
    intrinsics = np.array([[70.0, 80.0, 40.0, 36.0]])
    resized = resize_intrinsics(intrinsics, np.array([[96, 64]]), (224, 224))
    np.testing.assert_allclose(resized, [[70 * 224 / 96, 80 * 224 / 64, 40 * 224 / 96, 36 * 224 / 64]])
    point = np.array([0.03, -0.02, 0.5])
    before = [40 + 70 * point[0] / point[2], 36 - 80 * point[1] / point[2]]
    fx, fy, cx, cy = resized[0]
    after = [cx + fx * point[0] / point[2], cy - fy * point[1] / point[2]]
    np.testing.assert_allclose(after, [before[0] * 224 / 96, before[1] * 224 / 64])


def test_camera_from_copies_the_camera_of_an_export(tmp_path, caplog):
    solo = generate(tmp_path / "solo", "--count", "2", "--format", "solo", *CAMERA_ARGS)
    copied = generate(tmp_path / "copied", "--count", "2", "--camera-from", str(solo))
    np.testing.assert_array_equal(read_dataset(copied).cameras, np.tile(CAMERA.intrinsics, (2, 1)))
    again = generate(tmp_path / "again", "--count", "2", "--format", "solo", "--camera-from", str(copied))
    np.testing.assert_array_equal(read_dataset(again).cameras, np.tile(CAMERA.intrinsics, (2, 1)))
    assert (
        json.loads((again / MANIFEST).read_text())["scene"]["camera"]
        == json.loads((solo / MANIFEST).read_text())["scene"]["camera"]
    )

    square = generate(tmp_path / "square", "--count", "2", "--image-size", "48", "--fov", "50")  # legacy, no field
    from_square = generate(tmp_path / "from-square", "--count", "1", "--format", "solo", "--camera-from", str(square))
    np.testing.assert_allclose(read_dataset(from_square).cameras[0], intrinsics_from_fov(50.0, 48, 48))

    (square / MANIFEST).unlink()  # now like a Unity legacy export: camera_intrinsic only
    message = refused(tmp_path / "unity", ["--camera-from", str(square)], caplog)
    assert "--camera-from" in message and "does not trust" in message and "--camera W H FX FY CX CY" in message
    message = refused(tmp_path / "nothing", ["--camera-from", str(tmp_path / "absent")], caplog)
    assert message.startswith(f"--camera-from {tmp_path / 'absent'}")
    fovs = generate(tmp_path / "fovs", "--count", "6", "--format", "solo", "--image-size", "32", "--fov", "40", "70")
    assert "holds 6 cameras" in refused(tmp_path / "many", ["--camera-from", str(fovs)], caplog)


def test_randomised_cameras_draw_each_images_size_and_principal_point_and_label_it(tmp_path):
    """Heights, aspect, field of view and principal point drawn per image; each label's camera projects the box
    onto its rendered silhouette, and a smaller image drawn in the renderer's corner equals one rendered alone."""
    flags = ["--image-size", "40", "64", "--aspect", "1", "2", "--fov", "45", "75", "--principal-jitter", "0.15"]
    root = generate(tmp_path / "random", "--count", "8", "--seed", "5", "--format", "solo", *flags)
    index = read_dataset(root)
    widths, heights = index.image_sizes.T
    assert np.all((40 <= heights) & (heights <= 64)) and np.all((heights <= widths) & (widths <= 2 * heights + 1))
    assert len(np.unique(index.cameras, axis=0)) == 8 and len(np.unique(index.image_sizes, axis=0)) > 2
    for path, size in zip(index.image_paths, index.image_sizes, strict=True):
        assert Image.open(path).size == tuple(size)
    fx, fy, cx, cy = index.cameras.T
    assert np.all(np.abs(cx - widths / 2) <= 0.15 * widths) and np.all(np.abs(cy - heights / 2) <= 0.15 * heights)
    assert np.any(np.abs(cx - widths / 2) > 1) and np.allclose(fx, fy)
    fovs = np.degrees(2 * np.arctan(heights / 2 / fy))
    assert np.all((45 - 1e-6 <= fovs) & (fovs <= 75 + 1e-6))

    options = GenerationOptions(
        8,
        seed=5,
        image_size=(40, 64),
        format="solo",
        scene=scene_options(vertical_fov_deg=(45, 75), aspect=(1, 2), principal_jitter=0.15),
    )
    assert options.resolution == (128, 64)
    shared = GLRenderer(*options.resolution)
    for i in range(8):
        camera = options.image_camera(i)
        np.testing.assert_allclose(camera.intrinsics, index.cameras[i])
        scene = sample_scene(np.random.default_rng([5, i, 0]), options.scene, camera=camera)
        image, mask = shared.render(scene, mask=True)
        np.testing.assert_array_equal(image, np.asarray(Image.open(index.image_paths[i]).convert("RGB")))
        u = cx[i] + fx[i] * index.translations[i, 0, 0] / index.translations[i, 0, 2]
        v = cy[i] - fy[i] * index.translations[i, 0, 1] / index.translations[i, 0, 2]
        assert mask[int(v), int(u)]  # the labelled centre lies on the rendered box
    alone = GLRenderer(*camera.size)
    np.testing.assert_array_equal(alone.render(scene), image)
    alone.release()
    shared.release()


def test_the_ur3_preset_renders_unitys_650x400_and_the_square_options_replace_it(tmp_path):
    root = generate(tmp_path / "ur3", "--count", "1", "--preset", "ur3", "--format", "solo")
    index = read_dataset(root)
    assert Image.open(index.image_paths[0]).size == (650, 400)
    np.testing.assert_allclose(index.cameras[0], intrinsics_from_fov(60.0, 650, 400))
    square = generate(tmp_path / "square", "--count", "1", "--preset", "ur3", "--image-size", "32")
    assert Image.open(read_dataset(square).image_paths[0]).size == (32, 32)


def test_plain_faces_are_one_uniform_grey(tmp_path):
    scene_ranges = scene_options(faces="plain", rotation="full")
    renderer = GLRenderer(64, 64, faces=face_atlas("plain"))
    for index in range(3):
        image, mask = renderer.render(
            flat_light(sample_scene(np.random.default_rng([7, index, 0]), scene_ranges)), True
        )
        inner = np.asarray(Image.fromarray(mask).filter(ImageFilter.MinFilter(3)))  # away from anti-aliased edges
        assert inner.sum() > 20 and np.all(np.abs(image[inner].astype(int) - 200) <= 2)
    renderer.release()
    root = generate(tmp_path / "plain", "--count", "2", "--faces", "plain", "--image-size", "32")
    assert json.loads((root / MANIFEST).read_text())["scene"]["symmetric"] is True  # as --symmetric recorded it


def test_six_face_images_show_on_the_rendered_object(tmp_path):
    files = solid_faces(tmp_path / "faces")
    scene_ranges = scene_options(faces=tuple(files), rotation="full")
    renderer = GLRenderer(128, 128, faces=face_atlas(scene_ranges.faces))
    seen = set()
    for index in range(8):
        image, mask = renderer.render(
            flat_light(sample_scene(np.random.default_rng([8, index, 0]), scene_ranges)), True
        )
        inner = np.asarray(Image.fromarray(mask).filter(ImageFilter.MinFilter(3)))
        distances = np.abs(image[inner][:, None, :].astype(int) - np.array(SOLID)[None]).max(axis=-1)  # (P, 6)
        assert np.mean(distances.min(axis=1) <= 3) > 0.85  # nearly every pixel is one face's colour (edges blend)
        seen |= set(np.flatnonzero(np.bincount(distances.argmin(axis=1), minlength=6) > 3))
    renderer.release()
    assert len(seen) >= 4

    root = generate(tmp_path / "out", "--count", "2", "--image-size", "32", "--faces", *files)
    recorded = json.loads((root / MANIFEST).read_text())["scene"]
    assert recorded["symmetric"] is False and len(recorded["faces"]) == 6  # each file's SHA-256
    Image.new("RGB", (8, 8), (0, 0, 0)).save(files[2])  # another picture under the same name
    assert main(["generate", str(root), "--count", "3", "--image-size", "32", "--faces", *files]) == 2


def _facing_camera(face: str) -> np.ndarray:
    """The quarter-turn rotation that shows ``face`` to a camera on the -z side, its image upright (FACE_VIEWS)."""
    right, up = (np.array(v, float) for v in FACE_VIEWS[face])
    quarter = [axis_angle_quaternions(axis, k * np.pi / 2) for axis in np.eye(3) for k in range(4)]
    for a, b, c in product(quarter[:4], quarter[4:8], quarter[8:]):
        q = quaternion_multiply(a, quaternion_multiply(b, c))
        rotation = quaternion_to_matrix(q)
        if np.allclose(rotation @ right, [1, 0, 0]) and np.allclose(rotation @ up, [0, 1, 0]):
            return q
    raise AssertionError(f"no rotation shows {face}")


@pytest.mark.parametrize("face", FACE_NAMES)
def test_a_face_image_reads_upright_and_unmirrored_from_outside(tmp_path, face):
    """Four coloured quadrants of one face's image land in the same quadrants of the rendered face."""
    quadrants = np.zeros((40, 40, 3), np.uint8)
    quadrants[:20, :20], quadrants[:20, 20:] = (250, 0, 0), (0, 250, 0)  # top left red, top right green
    quadrants[20:, :20], quadrants[20:, 20:] = (0, 0, 250), (250, 250, 0)  # bottom left blue, bottom right yellow
    images = [quadrants if name == face else np.full((40, 40, 3), 90, np.uint8) for name in FACE_NAMES]
    scene = flat_light(sample_scene(np.random.default_rng([0, 0, 0]), scene_options()))
    cube = replace(scene.cube, translation=np.array([0.0, 0.0, 0.2]), quaternion=_facing_camera(face))
    scene = replace(scene, objects=[cube], distractors=[], table_size=0.0)
    renderer = GLRenderer(64, 64, faces=cube_atlas(images))
    image, mask = renderer.render(scene, mask=True)
    renderer.release()
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    quarter_rows = ((top + 3, (top + bottom) // 2 - 3), ((top + bottom) // 2 + 3, bottom - 3))
    quarter_cols = ((left + 3, (left + right) // 2 - 3), ((left + right) // 2 + 3, right - 3))
    expected = [[(250, 0, 0), (0, 250, 0)], [(0, 0, 250), (250, 250, 0)]]
    for (r0, r1), colours in zip(quarter_rows, expected, strict=True):
        for (c0, c1), colour in zip(quarter_cols, colours, strict=True):
            np.testing.assert_allclose(image[r0:r1, c0:c1].reshape(-1, 3).mean(axis=0), colour, atol=6)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--camera", "0", "10", "70", "80", "40", "36"], "--camera: the width and height must be whole numbers"),
        (["--camera", "96.5", "64", "70", "80", "40", "36"], "--camera: the width and height must be whole numbers"),
        (["--camera", "96", "64", "0", "80", "40", "36"], "--camera: the focal lengths FX FY must be above 0"),
        (["--camera", "96", "64", "70", "80", "140", "36"], "--camera: the principal point CX CY must lie inside"),
        (["--camera", "96", "64", "nan", "80", "40", "36"], "--camera: FX FY CX CY must be finite"),
        (["--camera", "10", "10", "7", "8", "4", "3"], "--camera: the width and height must be 16-4096 pixels"),
        ([*CAMERA_ARGS, "--image-size", "64"], "leave out --image-size, or the camera"),
        ([*CAMERA_ARGS, "--fov", "50"], "leave out --fov, or the camera"),
        ([*CAMERA_ARGS, "--aspect", "1.5"], "--camera sets the camera and --aspect randomise one"),
        (["--format", "solo", "--aspect", "0.1", "1"], "--aspect must be between 0.25 and 4"),
        (["--format", "solo", "--principal-jitter", "0.5"], "--principal-jitter must be between 0 and 0.25"),
        (["--format", "solo", "--image-size", "64", "32"], "a range of heights LO HI with LO <= HI"),
        (["--format", "solo", "--image-size", "32", "48", "64"], "--image-size takes one value or a range LO HI"),
        (["--format", "solo", "--image-size", "16", "--aspect", "0.5"], "widths 8-8 pixels"),
        (["--aspect", "1", "1.5"], "--aspect or --principal-jitter needs --format solo"),
        (["--faces", "dye"], "--faces takes die or plain, six image files in the order +x -x +y -y +z -z, or one"),
        (["--faces", "a.png", "b.png", "c.png", "d.png", "e.png"], "(5 files)"),
        (["--symmetric"], "--symmetric is now --faces plain"),
    ],
)
def test_impossible_cameras_and_faces_are_refused_before_anything_is_written(tmp_path, caplog, flags, named):
    assert named in refused(tmp_path / "parent" / "out", flags, caplog)
    assert not (tmp_path / "parent").exists()


def test_unreadable_face_files_are_named_before_anything_is_written(tmp_path, caplog):
    files = solid_faces(tmp_path / "faces")
    missing = [*files[:5], str(tmp_path / "faces" / "absent.png")]
    message = refused(tmp_path / "out", ["--faces", *missing], caplog)
    assert f"--faces: cannot read {missing[5]} as an image" in message and "+x -x +y -y +z -z" in message
    Path(files[1]).write_text("not an image")
    assert f"cannot read {files[1]}" in refused(tmp_path / "out", ["--faces", *files], caplog)


def _surface_colour(points: np.ndarray) -> np.ndarray:
    """A colour that names a point of the cube's surface (x, y, z in [-0.5, 0.5]): no two places alike."""
    return np.clip((points + 0.5) * 255, 0, 255).astype(np.uint8)


def _face_seen(right: np.ndarray, up: np.ndarray, size: int) -> np.ndarray:
    """A face's picture as seen from outside: pixel (row, col) shows the surface point there, given the directions
    of the picture's right and top edges on the cube (the face's normal is right x up in Unity's frame, negated)."""
    normal = -np.cross(right, up)  # Unity's frame is left-handed: right x up points into the object
    centres = (np.arange(size) + 0.5) / size - 0.5
    rows, cols = np.meshgrid(centres, centres, indexing="ij")
    points = normal * 0.5 + cols[..., None] * right - rows[..., None] * up
    return _surface_colour(points)


def test_an_unfolded_net_gives_the_same_object_as_six_face_pictures(tmp_path, caplog):
    """The net as a box folds: across the middle +x, +z, -x, -z upright; +y above +z, its top edge away from +z;
    -y below +z. Each cell is drawn from the cube's surface here, without the reader's table of cells."""
    size = 64
    x, y, z = np.eye(3)
    cells = {  # (row, column): directions of the cell's right and top edges on the folded cube
        (1, 0): (z, y),  # +x, seen from outside, its right edge towards +z
        (1, 1): (-x, y),  # +z, the front
        (1, 2): (-z, y),  # -x
        (1, 3): (x, y),  # -z
        (0, 1): (-x, -z),  # +y above the front: its lower edge meets the front's top edge
        (2, 1): (-x, z),  # -y below the front
    }
    net = np.zeros((3 * size, 4 * size, 3), np.uint8)
    for (row, column), (right, up) in cells.items():
        net[row * size : (row + 1) * size, column * size : (column + 1) * size] = _face_seen(right, up, size)
    Image.fromarray(net).save(tmp_path / "net.png")
    pictures = []
    for name in FACE_NAMES:
        pictures.append(tmp_path / f"{name}.png")
        Image.fromarray(_face_seen(*(np.array(v, float) for v in FACE_VIEWS[name]), size)).save(pictures[-1])
    from_net = face_atlas((str(tmp_path / "net.png"),))
    np.testing.assert_array_equal(from_net, face_atlas(tuple(map(str, pictures))))
    Image.fromarray(net[:, : 3 * size]).save(tmp_path / "square.png")
    assert "an unfolded net is a 4:3 cross" in refused(
        tmp_path / "out", ["--faces", str(tmp_path / "square.png")], caplog
    )
    assert (
        main(
            [
                "generate",
                str(tmp_path / "ok"),
                "--count",
                "1",
                "--image-size",
                "32",
                "--faces",
                str(tmp_path / "net.png"),
            ]
        )
        == 0
    )


def test_inspect_shows_the_object_size_and_each_camera(tmp_path, capsys):
    root = generate(tmp_path / "box", "--count", "2", "--format", "solo", "--object-dimensions", "0.2", "0.1", "0.05")
    capsys.readouterr()
    assert main(["inspect", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["object"] == [{"size": [0.2, 0.1, 0.05], "examples": 2}]
    assert summary["camera"]["all"] == [
        {
            "image_size": [128, 128],
            "intrinsics": pytest.approx(list(intrinsics_from_fov(60.0, 128, 128))),
            "examples": 2,
        }
    ]
    fovs = generate(tmp_path / "fovs", "--count", "2", "--format", "solo", "--image-size", "32", "--fov", "40", "70")
    assert main(["inspect", str(fovs)]) == 0
    text = capsys.readouterr().out
    assert "object      0.1 x 0.1 x 0.1 m" in text
    assert text.count("px at 32x32 (1 examples)") == 2
    camera = generate(tmp_path / "camera", "--count", "1", *CAMERA_ARGS)
    assert main(["inspect", str(camera)]) == 0
    assert "camera      fx 70.00  fy 80.00  cx 40.00  cy 36.00 px at 96x64" in capsys.readouterr().out
