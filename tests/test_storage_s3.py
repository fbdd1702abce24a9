"""s3:// against a real S3 API on loopback (moto's server): the same guarantees as gs:// (cached atomic downloads
reused while unchanged, prefixes synced, the sha256 pin, uploads, folders sent by what changed, the cache when
S3 is gone) and clear messages for missing credentials and a private bucket."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from gcs_fixtures import free_port

from conftest import BIN
from cubepose.data.sources import local_root
from cubepose.io.temporary import is_temporary
from cubepose.storage import StorageError, StorageUnreachableError, Uploader, fetch, upload_folder
from cubepose.storage.s3 import download, exists, parse_url, upload_file


def partial_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if is_temporary(path.name)]


@pytest.mark.parametrize(
    ("url", "expected"),
    [("s3://b/x/model-1.ckpt", ("b", "x/model-1.ckpt")), ("s3://b/train/", ("b", "train/")), ("s3://b", ("b", ""))],
)
def test_urls_split_into_bucket_and_key(url, expected):
    assert parse_url(url) == expected
    with pytest.raises(StorageError, match="names no bucket"):
        parse_url("s3:///key")


def test_an_object_is_cached_reused_and_downloaded_again_when_it_changes(s3, tmp_path):
    bucket = s3.bucket({"sets/cube.zip": b"first"})
    path = download(f"s3://{bucket}/sets/cube.zip", tmp_path)
    assert path == tmp_path / "s3" / bucket / "sets" / "cube.zip" and path.read_bytes() == b"first"
    inode = path.stat().st_ino
    assert download(f"s3://{bucket}/sets/cube.zip", tmp_path).stat().st_ino == inode  # reused, not rewritten
    s3.upload(bucket, "sets/cube.zip", b"second version")
    assert download(f"s3://{bucket}/sets/cube.zip", tmp_path).read_bytes() == b"second version"
    assert not partial_files(tmp_path)


def test_a_prefix_downloads_nested_objects_and_syncs_deletions(s3, tmp_path):
    bucket = s3.bucket({"train/a.json": b"a", "train/rgb/1.png": b"png", "other/x": b"x"})
    directory = download(f"s3://{bucket}/train/", tmp_path)
    assert sorted(
        p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file() and p.name[0] != "."
    ) == [
        "a.json",
        "rgb/1.png",
    ]
    s3.client().delete_object(Bucket=bucket, Key="train/a.json")
    download(f"s3://{bucket}/train/", tmp_path)
    assert not (directory / "a.json").exists() and (directory / "rgb" / "1.png").read_bytes() == b"png"
    with pytest.raises(StorageError, match="no objects under"):
        download(f"s3://{bucket}/validation/", tmp_path)


def test_missing_objects_and_buckets_and_escaping_keys_are_named(s3, tmp_path):
    bucket = s3.bucket({"a/../../x": b"x"})
    with pytest.raises(StorageError, match=f"s3://{bucket}/missing.zip not found"):
        download(f"s3://{bucket}/missing.zip", tmp_path)
    with pytest.raises(StorageError, match="s3://no-such-bucket-cubepose/x.zip not found"):
        download("s3://no-such-bucket-cubepose/x.zip", tmp_path)
    with pytest.raises(StorageError, match="cannot be stored as a local file"):
        download(f"s3://{bucket}/", tmp_path)
    assert not list((tmp_path / "s3").rglob("x"))


def test_when_s3_is_unreachable_a_complete_cached_copy_is_used(s3, tmp_path, monkeypatch, caplog):
    bucket = s3.bucket({"cube.zip": b"zip", "train/1.png": b"png"})
    path = download(f"s3://{bucket}/cube.zip", tmp_path)
    directory = download(f"s3://{bucket}/train/", tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with caplog.at_level(logging.WARNING):
        assert download(f"s3://{bucket}/cube.zip", tmp_path) == path
        assert download(f"s3://{bucket}/train/", tmp_path) == directory
    assert "using the cached copy" in caplog.text
    with pytest.raises(StorageUnreachableError, match="connection to http://127.0.0.1:.* failed"):
        download(f"s3://{bucket}/other.zip", tmp_path)


def test_fetch_pins_sha256_and_uploads_round_trip(s3, tmp_path):
    content = os.urandom(10_000)
    digest = hashlib.sha256(content).hexdigest()
    bucket = s3.bucket()
    local = tmp_path / "model-5.ckpt"
    local.write_bytes(content)
    upload_file(local, f"s3://{bucket}/runs/model-5.ckpt")
    assert exists(f"s3://{bucket}/runs/model-5.ckpt") and not exists(f"s3://{bucket}/runs/model-6.ckpt")
    assert fetch(f"s3://{bucket}/runs/model-5.ckpt", tmp_path / "cache", sha256=digest).read_bytes() == content
    with pytest.raises(StorageError, match="but the pin says 00ab"):
        fetch(f"s3://{bucket}/runs/model-5.ckpt", tmp_path / "cache", sha256="00ab")
    with pytest.raises(StorageError, match="is a prefix; name one object"):
        fetch(f"s3://{bucket}/runs/", tmp_path / "cache")


def test_the_uploader_and_folder_uploads_send_what_changed(s3, tmp_path):
    bucket = s3.bucket()
    files = [tmp_path / f"model-{step}.ckpt" for step in (1, 2)]
    for path in files:
        path.write_bytes(os.urandom(500))
    uploader = Uploader(f"s3://{bucket}/runs/exp/")
    assert all(uploader.submit(path).result() for path in files)
    uploader.close()
    assert s3.read(bucket, "runs/exp/model-2.ckpt") == files[1].read_bytes()
    folder = tmp_path / "run"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "log.txt").write_text("step 1\n")
    (folder / "config.yaml").write_text("seed: 0\n")
    assert upload_folder(folder, f"s3://{bucket}/published") == 2
    assert upload_folder(folder, f"s3://{bucket}/published") == 0  # the same bytes: nothing sent
    (folder / "train" / "log.txt").write_text("step 2\n")
    assert upload_folder(folder, f"s3://{bucket}/published") == 1
    assert s3.read(bucket, "published/train/log.txt") == b"step 2\n"


def test_without_credentials_public_reads_work_and_the_rest_say_what_to_set(s3, tmp_path, monkeypatch):
    bucket = s3.bucket({"cube.zip": b"zip"}, public=True)
    private = s3.bucket({"cube.zip": b"zip"})
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert download(f"s3://{bucket}/cube.zip", tmp_path).read_bytes() == b"zip"  # unsigned
    with pytest.raises(StorageError, match=f"access to s3://{private}/cube.zip denied .*set AWS_ACCESS_KEY_ID"):
        download(f"s3://{private}/cube.zip", tmp_path)
    (tmp_path / "model-1.ckpt").write_bytes(b"w")
    with pytest.raises(StorageError, match="cannot write to s3://.*no AWS credentials found; set AWS_ACCESS_KEY_ID"):
        upload_file(tmp_path / "model-1.ckpt", f"s3://{bucket}/model-1.ckpt")


def test_a_private_bucket_names_the_credentials_it_needs(private_s3, tmp_path, monkeypatch):
    server, bucket = private_s3
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    url = f"s3://{bucket}/model-1.ckpt"
    with pytest.raises(StorageError, match=f"access to {url} denied .*set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        fetch(url, tmp_path / "anonymous")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StorageError, match=f"access to {url} denied"):
        fetch(url, tmp_path / "wrong")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.credentials["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.credentials["aws_secret_access_key"])
    assert fetch(url, tmp_path / "allowed").read_bytes() == b"weights"
    assert not partial_files(tmp_path)


def test_generate_writes_a_dataset_to_s3_that_inspect_and_training_data_read(s3, tiny_data, tmp_path):
    """`cubepose generate s3://...` (render, then upload) and the dataset read back from the prefix and a zip."""
    bucket = s3.bucket()
    env = {**os.environ, **s3.environment(), "CUBEPOSE_CACHE": str(tmp_path / "cache")}
    command = [str(BIN / "cubepose"), "generate", f"s3://{bucket}/data//train", "--count", "3", "--image-size", "32"]
    result = subprocess.run([*command, "--workers", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    keys = [item["Key"] for item in s3.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys and all(key.startswith("data/train/") for key in keys)  # no empty path segment
    inspect = [str(BIN / "cubepose"), "inspect", f"s3://{bucket}/data/train/", "--json"]
    result = subprocess.run(inspect, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["examples"] == 3
    archive = tmp_path / "test.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in tiny_data["test"].rglob("*"):
            handle.write(path, path.relative_to(tiny_data["test"]))
    s3.upload(bucket, "sets/test.zip", archive)
    root = local_root(f"s3://{bucket}/sets/test.zip", str(tmp_path / "cache"))
    assert root.is_dir() and any(root.rglob("captures_*.json"))
