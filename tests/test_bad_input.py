"""shared/perception-format.md §4 for both layouts: unusable datasets fail with one clear message,
single bad captures are skipped, counted and reported once."""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cubepose.config import validate_config
from cubepose.data import TrainDataset
from cubepose.data.formats import read_dataset
from cubepose.data.sources import local_root
from cubepose.errors import DatasetError
from cubepose.geometry.projection import intrinsics_from_fov
from cubepose.synth.generate import GenerationOptions, generate_dataset

COUNT = 8
LAYOUTS = ("legacy", "solo")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pristine")
    for layout in LAYOUTS:
        generate_dataset(root / layout, GenerationOptions(count=COUNT, seed=4, image_size=32, format=layout))
    return {layout: root / layout for layout in LAYOUTS}


@pytest.fixture(params=LAYOUTS)
def dataset(request, pristine, tmp_path) -> Path:
    """A fresh copy of an 8-capture dataset in each layout."""
    return Path(shutil.copytree(pristine[request.param], tmp_path / request.param))


def box_values(root: Path) -> list[tuple[Path, dict, list]]:
    """(file, document, values of the 3D box annotation) for every capture, in file order."""
    out = []
    for path in sorted(root.glob("Dataset*/captures_*.json")):
        document = json.loads(path.read_text())
        out += [(path, document, c["annotations"][0]["values"]) for c in document["captures"]]
    for number in range(COUNT):
        path = root / f"sequence.{number}" / "step0.frame_data.json"
        if path.exists():
            document = json.loads(path.read_text())
            out.append((path, document, document["captures"][0]["annotations"][0]["values"]))
    return out


def edit(root: Path, changes: dict[int, callable]) -> None:
    """Apply ``changes[i](values)`` to capture i's box values and write the files back."""
    entries = box_values(root)
    for i, change in changes.items():
        change(entries[i][2])
    for path, document, _ in {id(e[1]): e for e in entries}.values():
        path.write_text(json.dumps(document))


def image_paths(root: Path) -> list[Path]:
    return [Path(p) for p in read_dataset(root).image_paths]


def test_missing_root_names_the_path_and_how_to_make_data(tmp_path):
    with pytest.raises(DatasetError, match=f"dataset root {tmp_path / 'nowhere'} does not exist.*cubepose generate"):
        read_dataset(tmp_path / "nowhere")


def test_root_without_captures_is_one_clear_error(tmp_path):
    (tmp_path / "Logs").mkdir()
    with pytest.raises(DatasetError, match=f"no captures found in {tmp_path}: expected a legacy, SOLO or BOP"):
        read_dataset(tmp_path)


def test_missing_dataset_root_through_the_config_is_one_clear_error(tiny_config, tmp_path):
    tiny_config["data"]["train"]["root"] = str(tmp_path / "typo")
    with pytest.raises(DatasetError, match="typo does not exist; set data/<split>/root"):
        TrainDataset(validate_config(tiny_config))


def test_malformed_json_names_the_file_line_and_column(dataset):
    path = box_values(dataset)[0][0]
    path.write_text('{"captures": [\n  {"id": 1,, } ]}')
    with pytest.raises(DatasetError, match=rf"malformed JSON in {path} at line 2, column 12"):
        read_dataset(dataset)


def test_malformed_annotation_definitions_name_the_file(pristine, tmp_path):
    root = Path(shutil.copytree(pristine["legacy"], tmp_path / "legacy"))
    path = next(root.glob("Dataset*/annotation_definitions.json"))
    path.write_text("{")
    with pytest.raises(DatasetError, match=r"malformed JSON in .*annotation_definitions.json at line 1"):
        read_dataset(root)


def test_bad_captures_are_skipped_counted_and_reported_once(dataset, caplog):
    edit(
        dataset,
        {
            0: lambda values: values.clear(),
            1: lambda values: values[0].update(translation=[float("nan"), 0.0, 1.0]),
            2: lambda values: values[0].update(translation=[0.0, float("inf"), 1.0]),
            3: lambda values: values[0].update(rotation=[0.0, 0.0, 0.0, 0.0]),
            4: lambda values: values[0].update(rotation=[float("nan"), 0.0, 0.0, 1.0]),
        },
    )
    paths = image_paths(dataset)  # captures 5, 6, 7 remain
    paths[0].unlink()
    paths[1].write_bytes(paths[1].read_bytes()[:60])  # truncated
    paths[2].write_bytes(b"not a png at all")
    caplog.clear()
    caplog.set_level(logging.WARNING)
    with pytest.raises(DatasetError, match=rf"no usable captures in {dataset} \(skipped 8 of 8 captures"):
        read_dataset(dataset)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "skipped 8 of 8 captures" in warnings[0]
    for reason, count in [
        ("empty annotation", 1),
        ("non-finite translation", 2),
        ("zero or non-finite quaternion", 2),
        ("missing image", 1),
        ("corrupt image", 2),
    ]:
        assert f"{count} {reason}" in warnings[0]


def test_one_bad_capture_leaves_the_rest_usable(dataset):
    reference = read_dataset(dataset)
    edit(dataset, {2: lambda values: values.clear()})
    index = read_dataset(dataset)
    assert len(index) == COUNT - 1 and index.skipped == {"empty annotation": 1}
    np.testing.assert_array_equal(index.translations, np.delete(reference.translations, 2, axis=0))


def test_image_corrupt_inside_is_named_when_decoded(dataset, tiny_config):
    image = image_paths(dataset)[0]
    data = bytearray(image.read_bytes())
    data[60:120] = bytes(60)  # damage the image data; signature and end marker stay intact
    image.write_bytes(bytes(data))
    tiny_config["data"]["train"]["root"] = str(dataset)
    tiny_config["image_cache"] = False
    train = TrainDataset(validate_config(tiny_config))
    with pytest.raises(DatasetError, match=f"cannot decode image {image}"):
        train.get_example(0)
    tiny_config["image_cache"] = True  # decoded while building the cache, at load time
    with pytest.raises(DatasetError, match=f"cannot decode image {image}.*re-export or remove this capture"):
        TrainDataset(validate_config(tiny_config))


def captures(root: Path) -> list[tuple[Path, dict, dict]]:
    """(file, document, capture) for every capture, in file order; SOLO filenames are relative to their sequence."""
    out = []
    for path in sorted([*root.glob("Dataset*/captures_*.json"), *root.glob("captures_*.json")]):
        document = json.loads(path.read_text())
        out += [(path, document, capture) for capture in document["captures"]]
    for number in range(COUNT):
        path = root / f"sequence.{number}" / "step0.frame_data.json"
        if path.exists():
            document = json.loads(path.read_text())
            out.append((path, document, document["captures"][0]))
    return out


def rename_images(root: Path, filenames: dict[int, str]) -> None:
    """Set capture i's ``filename`` to ``filenames[i]`` and write the files back."""
    entries = captures(root)
    for i, filename in filenames.items():
        entries[i][2]["filename"] = filename
    for path, document, _ in {id(e[1]): e for e in entries}.values():
        path.write_text(json.dumps(document))


def up_to_root(root: Path) -> str:
    """The relative path from a capture's filename base back to the dataset root."""
    return "" if any(root.glob("Dataset*")) else "../"


def test_images_outside_the_dataset_are_skipped_as_outside_and_never_read(dataset, tmp_path):
    secret = tmp_path / "secret.png"  # a valid image beside the dataset: it must not be trained on
    shutil.copy(image_paths(dataset)[0], secret)
    (dataset / "link.png").symlink_to(secret)
    (dataset / "inside-link.png").symlink_to(image_paths(dataset)[7])  # a symlink that stays inside is fine
    up = up_to_root(dataset)
    rename_images(
        dataset,
        {0: str(secret), 1: f"{up}../secret.png", 2: f"{up}link.png", 3: f"{up}inside-link.png", 4: "/etc/passwd"},
    )
    index = read_dataset(dataset)
    assert index.skipped == {"outside the dataset": 4, "duplicate capture": 1}
    assert len(index) == COUNT - 5
    assert all(path.startswith(os.path.join(os.path.realpath(dataset), "")) for path in index.image_paths)


def test_an_extracted_zip_cannot_name_files_beside_it(pristine, tmp_path):
    root = Path(shutil.copytree(pristine["legacy"], tmp_path / "export"))
    rename_images(root, {0: "../secret.png"})
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as archive:
        for path in sorted(root.rglob("*")):
            archive.write(path, path.relative_to(root).as_posix())
    shutil.copy(image_paths(pristine["legacy"])[0], tmp_path / "secret.png")  # beside the extracted folder
    index = read_dataset(local_root(str(tmp_path / "data.zip")))
    assert index.skipped == {"outside the dataset": 1} and len(index) == COUNT - 1


def test_gs_data_cannot_name_other_cached_files(gcs_emulator, pristine, tmp_path):
    root = Path(shutil.copytree(pristine["solo"], tmp_path / "export"))
    rename_images(root, {0: "../../secret.png"})
    objects = {f"data/solo/{p.relative_to(root).as_posix()}": p for p in root.rglob("*") if p.is_file()}
    bucket = gcs_emulator.bucket(objects)
    cache = tmp_path / "cache"
    secret = cache / "gcs" / bucket / "data" / "secret.png"  # as if an earlier run had downloaded it
    secret.parent.mkdir(parents=True)
    shutil.copy(image_paths(pristine["solo"])[0], secret)
    index = read_dataset(local_root(f"gs://{bucket}/data/solo/", str(cache)))
    assert index.skipped == {"outside the dataset": 1} and len(index) == COUNT - 1


def test_labels_are_checked_as_float32_numbers_in_front_of_the_camera(dataset):
    edit(
        dataset,
        {
            0: lambda values: values[0].update(translation=[1e308, 0.0, 1.0]),  # finite in float64 only
            1: lambda values: values[0].update(translation=[0.0, 0.0, 0.0]),
            2: lambda values: values[0].update(translation=[0.1, 0.0, -1.0]),
            3: lambda values: values[0].update(translation=[True, 0.0, 1.0]),
            4: lambda values: values[0].update(rotation=["0", "0", "0", "1"]),
            5: lambda values: values[0].update(rotation=[0.0, 0.0, 0.0, 10**400]),  # too large for any float
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or division warnings on the way either
        index = read_dataset(dataset)
    assert index.skipped == {
        "non-finite translation": 1,
        "cube at or behind the camera (z <= 0)": 2,
        "pose not numbers": 2,
        "zero or non-finite quaternion": 1,
    }
    assert len(index) == 2 and index.translations.dtype == np.float32 and np.isfinite(index.translations).all()


def test_a_duplicated_capture_is_counted_and_its_image_used_once(dataset):
    up = up_to_root(dataset)
    relative = os.path.relpath(image_paths(dataset)[3], dataset)
    rename_images(dataset, {2: up + relative})
    index = read_dataset(dataset)
    assert index.skipped == {"duplicate capture": 1} and len(index) == COUNT - 1
    assert len(set(index.image_paths)) == len(index)


def test_mixed_image_sizes_in_a_legacy_export_keep_their_own_size_and_camera(pristine, tmp_path, caplog):
    root = Path(shutil.copytree(pristine["legacy"], tmp_path / "legacy"))
    small = image_paths(root)[5]
    Image.open(small).resize((16, 24)).save(small)  # one image exported at another resolution
    caplog.set_level(logging.WARNING)
    index = read_dataset(root, camera={"vertical_fov": 60.0, "fx": None, "fy": None, "cx": None, "cy": None})
    assert "mixes image sizes: 16x24 (1), 32x32 (7)" in caplog.text
    assert index.image_sizes[5].tolist() == [16, 24] and (index.image_sizes[np.arange(COUNT) != 5] == 32).all()
    np.testing.assert_allclose(index.cameras[5], intrinsics_from_fov(60.0, 16, 24))
    np.testing.assert_allclose(index.cameras[0], intrinsics_from_fov(60.0, 32, 32))
    pixels = {"vertical_fov": 60.0, "fx": 30.0, "fy": 30.0, "cx": 16.0, "cy": 16.0}
    with pytest.raises(DatasetError, match="mixes image sizes .* set data/camera/vertical_fov instead"):
        read_dataset(root, camera=pixels)


def test_a_flattened_export_cannot_make_its_parent_folder_the_image_base(pristine, tmp_path):
    """captures_*.json at the root: filenames are relative to the root, never to the folder around it."""
    flat = tmp_path / "flat"
    shutil.copytree(pristine["legacy"], flat)
    (json_dir,) = flat.glob("Dataset*")
    for path in json_dir.iterdir():
        path.rename(flat / path.name)
    json_dir.rmdir()
    beside = tmp_path / "other" / "x.png"  # beside the dataset, named as if relative to the folder around it
    beside.parent.mkdir()
    shutil.copy(image_paths(pristine["legacy"])[0], beside)
    rename_images(flat, {0: "other/x.png"})
    index = read_dataset(flat)
    assert index.skipped == {"missing image": 1} and len(index) == COUNT - 1
    assert all(path.startswith(os.path.join(os.path.realpath(flat), "")) for path in index.image_paths)
