"""Dataset sources: a .zip extracted once beside itself, gs:// archives and prefixes via the real emulator."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cubepose.config import validate_config
from cubepose.data import TrainDataset
from cubepose.data.archives import MARKER
from cubepose.data.formats import read_dataset
from cubepose.data.sources import local_root
from cubepose.errors import DatasetError
from cubepose.storage import StorageError
from cubepose.synth.generate import GenerationOptions, generate_dataset


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """A SOLO export wrapped in a folder (as zipped by hand) and a legacy one, 10 captures each."""
    root = tmp_path_factory.mktemp("exports")
    generate_dataset(root / "solo" / "run_1", GenerationOptions(count=10, seed=2, image_size=32, format="solo"))
    generate_dataset(root / "legacy", GenerationOptions(count=10, seed=2, image_size=32))
    return {"solo": root / "solo", "legacy": root / "legacy"}


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(folder.rglob("*")):
            handle.write(path, path.relative_to(folder).as_posix())
    return archive


def test_zip_is_extracted_beside_it_once_and_reused(exports, tmp_path):
    archive = zip_folder(exports["solo"], tmp_path / "solo_export.zip")
    root = local_root(str(archive))
    assert root == tmp_path / "solo_export" and (root / MARKER).is_file()
    index = read_dataset(root)
    assert index.format == "solo" and len(index) == 10
    np.testing.assert_allclose(index.translations, read_dataset(exports["solo"]).translations)

    (root / "sentinel").write_text("kept while the archive is unchanged")
    assert local_root(str(archive)) == root and (root / "sentinel").exists()
    (root / "sentinel").unlink()  # a changed archive replaces only what cubepose extracted
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))  # a new archive
    assert local_root(str(archive)) == root
    assert len(read_dataset(root)) == 10
    assert not list(tmp_path.glob(".solo_export.*.tmp"))


def test_existing_folder_not_extracted_by_cubepose_is_never_overwritten(exports, tmp_path):
    archive = zip_folder(exports["legacy"], tmp_path / "cube.zip")
    (tmp_path / "cube").mkdir()
    (tmp_path / "cube" / "mine.txt").write_text("user data")
    with pytest.raises(DatasetError, match="cube exists but was not extracted from cube.zip by cubepose"):
        local_root(str(archive))
    assert (tmp_path / "cube" / "mine.txt").read_text() == "user data"


def test_corrupt_or_fake_zip_is_a_clear_error_and_leaves_nothing(exports, tmp_path):
    archive = zip_folder(exports["legacy"], tmp_path / "cube.zip")
    data = bytearray(archive.read_bytes())
    data[200:260] = bytes(60)  # damage compressed member data: its CRC no longer matches
    archive.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="cube.zip is not a valid zip archive.*download or export it again"):
        local_root(str(archive))
    (tmp_path / "fake.zip").write_text("this is not a zip")
    with pytest.raises(DatasetError, match="fake.zip is not a valid zip archive"):
        local_root(str(tmp_path / "fake.zip"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.zip", "fake.zip"]
    with pytest.raises(DatasetError, match="dataset archive .*missing.zip does not exist"):
        local_root(str(tmp_path / "missing.zip"))


def test_gs_zip_and_gs_prefix_through_the_config(gcs_emulator, exports, tmp_path, tiny_config):
    archive = zip_folder(exports["legacy"], tmp_path / "legacy.zip")
    solo_files = {f"exports/solo/{p.relative_to(exports['solo']).as_posix()}": p for p in exports["solo"].rglob("*")}
    bucket = gcs_emulator.bucket({"data/legacy.zip": archive, **{k: p for k, p in solo_files.items() if p.is_file()}})
    cache = tmp_path / "cache"
    tiny_config["data"]["cache_dir"] = str(cache)
    tiny_config["data"]["train"]["root"] = f"gs://{bucket}/data/legacy.zip"
    train = TrainDataset(validate_config(tiny_config))
    assert len(train) == 10 and train.index.format == "legacy"
    assert (cache / "gcs" / bucket / "data" / "legacy.zip").read_bytes() == archive.read_bytes()
    assert str(train.index.root).startswith(str(cache / "gcs" / bucket / "data" / "legacy"))

    tiny_config["data"]["train"]["root"] = f"gs://{bucket}/exports/solo/"
    train = TrainDataset(validate_config(tiny_config))
    assert len(train) == 10 and train.index.format == "solo"
    np.testing.assert_allclose(train.labels["translation"], read_dataset(exports["solo"]).translations[:, 0])


def test_missing_gs_object_names_the_url(gcs_emulator, tmp_path):
    bucket = gcs_emulator.bucket({"other.txt": b"x"})
    with pytest.raises(StorageError, match=f"gs://{bucket}/nothing.zip"):
        local_root(f"gs://{bucket}/nothing.zip", str(tmp_path))


def test_private_bucket_without_credentials_says_how_to_log_in(unauthorized_gcs, tmp_path):
    with pytest.raises(StorageError, match="credentials.*gcloud auth application-default login"):
        local_root("gs://private-bucket/train.zip", str(tmp_path))
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
