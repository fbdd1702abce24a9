"""Sharded generation (`--shard K --shards N`), read back as one dataset from a folder or gs://, and folder uploads."""

from __future__ import annotations

import filecmp
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from cubepose.cli import main
from cubepose.config import defaults
from cubepose.data.datasets import read_root
from cubepose.data.formats import read_dataset
from cubepose.errors import DatasetError, StorageError
from cubepose.storage import upload_folder

COMMON = ["--count", "20", "--seed", "5", "--image-size", "32", "--workers", "1"]


def generate_shards(out: Path, shards: int, layout: str = "legacy", extra: tuple[str, ...] = ()) -> None:
    for shard in range(shards):
        args = ["generate", str(out), *COMMON, "--format", layout, "--shard", str(shard), "--shards", str(shards)]
        assert main([*args, *extra]) == 0


@pytest.fixture(scope="module", params=["legacy", "solo"])
def sharded_and_whole(request, tmp_path_factory) -> tuple[Path, Path]:
    """The same 20-image dataset written once in 3 shards and once whole."""
    root = tmp_path_factory.mktemp(f"shards-{request.param}")
    generate_shards(root / "sharded", 3, request.param)
    assert main(["generate", str(root / "whole"), *COMMON, "--format", request.param]) == 0
    return root / "sharded", root / "whole"


def test_shards_read_as_one_dataset_equal_to_the_unsharded_run(sharded_and_whole):
    sharded_root, whole_root = sharded_and_whole
    assert sorted(p.name for p in sharded_root.iterdir()) == [f"shard-0000{k}-of-00003" for k in range(3)]
    sharded, whole = read_dataset(sharded_root), read_dataset(whole_root)
    assert len(sharded) == len(whole) == 20 and sharded.total == 20
    assert sharded.root == sharded_root
    for name in ("translations", "quaternions", "cameras", "image_sizes"):
        np.testing.assert_array_equal(getattr(sharded, name), getattr(whole, name))
    # Same scenes, same pixels: the shards split one dataset, and no image appears twice.
    assert all(filecmp.cmp(a, b, shallow=False) for a, b in zip(sharded.image_paths, whole.image_paths, strict=True))
    assert len({Path(p).parent.parent for p in sharded.image_paths}) == 3
    assert len({tuple(t) for t in sharded.translations[:, 0]}) == 20


def test_shard_ranges_partition_the_indices(tmp_path):
    generate_shards(tmp_path, 3)
    counts = [len(list((tmp_path / f"shard-0000{k}-of-00003").rglob("*.png"))) for k in range(3)]
    assert counts == [6, 7, 7]


def test_a_missing_shard_is_named_with_the_command_that_makes_it(sharded_and_whole, tmp_path):
    root = tmp_path / "incomplete"
    shutil.copytree(sharded_and_whole[0], root)
    shutil.rmtree(root / "shard-00001-of-00003")
    with pytest.raises(DatasetError, match=r"shard\(s\) 1 are missing.*--shard 1 --shards 3"):
        read_dataset(root)


def test_shards_of_different_splits_or_options_or_stray_folders_are_refused(tmp_path):
    generate_shards(tmp_path / "a", 2)
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "a", mixed)
    shutil.copytree(tmp_path / "a" / "shard-00000-of-00002", mixed / "shard-00000-of-00003")
    with pytest.raises(DatasetError, match="mixes shards of 2 and 3-way splits"):
        read_dataset(mixed)

    reseeded = tmp_path / "reseeded"
    shutil.copytree(tmp_path / "a", reseeded)
    shutil.rmtree(reseeded / "shard-00001-of-00002")
    args = ["generate", str(reseeded), *COMMON, "--shard", "1", "--shards", "2"]
    assert main([*args[:5], "6", *args[6:]]) == 0  # --seed 6
    with pytest.raises(DatasetError, match=r"different options \(seed\)"):
        read_dataset(reseeded)

    stray = tmp_path / "stray"
    shutil.copytree(tmp_path / "a", stray)
    (stray / "notes").mkdir()
    with pytest.raises(DatasetError, match="other folders \\(notes\\)"):
        read_dataset(stray)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--shard", "3", "--shards", "3"], "--shard must be in 0..2"),
        (["--shards", "0"], "--shard must be in"),
        (["--shards", "21"], "--shards 21 is more than --count 20"),
    ],
)
def test_bad_shard_flags_are_refused(tmp_path, caplog, flags, message):
    assert main(["generate", str(tmp_path / "out"), *COMMON, *flags]) == 2
    assert message in caplog.text
    assert not (tmp_path / "out").exists()


def test_a_shard_extended_with_another_count_is_refused(tmp_path, caplog):
    generate_shards(tmp_path, 2)
    args = ["generate", str(tmp_path), *COMMON, "--shard", "0", "--shards", "2"]
    assert main([*args[:3], "30", *args[4:]]) == 2  # --count 30 would move the shard boundaries
    assert "other options (count differ)" in caplog.text


def test_generated_shards_on_gcs_read_as_one_dataset_and_reuploads_send_nothing(gcs_emulator, tmp_path, caplog):
    bucket = gcs_emulator.bucket()
    url = f"gs://{bucket}/cube/train"
    generate_shards(url, 2)  # rendered in the cache, then uploaded
    with gcs_emulator.client() as client:
        names = [blob.name for blob in client.list_blobs(bucket)]
    assert {name.split("/")[2] for name in names} == {"shard-00000-of-00002", "shard-00001-of-00002"}
    assert sum(name.endswith(".png") for name in names) == 20

    caplog.set_level(logging.INFO, logger="cubepose.synth.generate")
    generate_shards(url, 2)  # a re-run (a retried pipeline step) renders and sends nothing new
    assert caplog.text.count("uploaded 0 new or changed files") == 2

    data = {**defaults()["data"], "cache_dir": str(tmp_path / "cache")}
    index = read_root(data, url + "/")
    assert len(index) == 20
    local = read_dataset(tmp_path / "cache" / "gcs" / bucket / "cube" / "train")
    np.testing.assert_array_equal(index.translations, local.translations)


def test_upload_folder_sends_only_changed_files_and_skips_excluded_ones(gcs_emulator, tmp_path):
    folder = tmp_path / "run"
    (folder / "train" / "checkpoints").mkdir(parents=True)
    (folder / "train" / "log.txt").write_text("step 1\n")
    (folder / "train" / "checkpoints" / "model-1.ckpt").write_bytes(b"weights")
    (folder / "train" / ".log.txt.abc.tmp").write_text("half a write")
    (folder / "configs.yaml").write_text("a: 1\n")
    bucket = gcs_emulator.bucket()
    url = f"gs://{bucket}/runs/one"
    assert upload_folder(folder, url, exclude=("*.ckpt",)) == 2
    with gcs_emulator.client() as client:
        assert sorted(b.name for b in client.list_blobs(bucket)) == ["runs/one/configs.yaml", "runs/one/train/log.txt"]
    assert upload_folder(folder, url, exclude=("*.ckpt",)) == 0
    (folder / "train" / "log.txt").write_text("step 1\nstep 2\n")
    assert upload_folder(folder, url + "/", exclude=("*.ckpt",)) == 1
    with gcs_emulator.client() as client:
        assert client.bucket(bucket).blob("runs/one/train/log.txt").download_as_text() == "step 1\nstep 2\n"

    copy = tmp_path / "copy"
    assert upload_folder(folder, str(copy)) == 3
    assert upload_folder(folder, str(copy)) == 0
    assert json.dumps(sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())) == json.dumps(
        ["configs.yaml", "train/checkpoints/model-1.ckpt", "train/log.txt"]
    )
    with pytest.raises(StorageError, match="is not a folder"):
        upload_folder(tmp_path / "missing", url)
    with pytest.raises(StorageError, match="cannot upload to https://example.com"):
        upload_folder(folder, "https://example.com/runs")
