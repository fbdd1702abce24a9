"""cubepose.storage against real endpoints: gcp-storage-emulator, and loopback servers that answer 401 or break off."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gcs_fixtures import free_port

from cubepose.errors import CubeposeError
from cubepose.io.temporary import is_temporary
from cubepose.storage import StorageError, StorageUnreachableError, is_gcs_url
from cubepose.storage.gcs import download as download_gcs
from cubepose.storage.gcs import gcs_client
from cubepose.storage.gcs import parse_url as parse_gcs_url


def partial_files(directory: Path) -> list[Path]:
    """Temporary download files anywhere under ``directory``."""
    return [path for path in directory.rglob("*") if is_temporary(path.name)]


def identity(path: Path) -> tuple[int, int]:
    """Inode and mtime: a new download (temp file + rename) always changes the inode."""
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def dead_pid() -> int:
    """The id of a process that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(
    ("url", "expected"),
    [("gs://b/data/file.zip", ("b", "data/file.zip")), ("gs://b/pre/fix/", ("b", "pre/fix/")), ("gs://b", ("b", ""))],
)
def test_parse_gcs_url(url, expected):
    assert is_gcs_url(url)
    assert parse_gcs_url(url) == expected


@pytest.mark.parametrize("url", ["gs://", "gs:///data/file.zip"])
def test_malformed_url_names_it_and_the_right_form(url, tmp_path):
    with pytest.raises(StorageError) as info:
        download_gcs(url, tmp_path)
    assert repr(url) in str(info.value)
    assert "gs://bucket/path/file.zip" in str(info.value) and "gs://bucket/prefix/" in str(info.value)
    assert isinstance(info.value, CubeposeError)


def test_not_gcs_urls():
    assert not is_gcs_url("/data/cube") and not is_gcs_url("s3://b/x") and not is_gcs_url(None)
    with pytest.raises(StorageError, match="not a gs:// URL"):
        parse_gcs_url("https://storage.googleapis.com/b/x")


def test_object_name_escaping_the_cache_is_refused(gcs_emulator, tmp_path):
    with pytest.raises(StorageError, match="cannot be stored as a local file"):
        download_gcs("gs://some-bucket/a/../../etc/passwd", tmp_path)


def test_object_lands_at_cache_path_and_is_reused(gcs_emulator, tmp_path):
    payload = os.urandom(50_000)
    bucket = gcs_emulator.bucket({"sets/cube.zip": payload})

    path = download_gcs(f"gs://{bucket}/sets/cube.zip", tmp_path)

    assert path == tmp_path / "gcs" / bucket / "sets" / "cube.zip"
    assert path.read_bytes() == payload
    record = json.loads((path.parent / ".cube.zip.source.json").read_text())
    assert record["size"] == len(payload) == record["local_size"]
    before = identity(path)
    assert download_gcs(f"gs://{bucket}/sets/cube.zip", tmp_path) == path
    assert identity(path) == before, "an up-to-date cached file must not be downloaded again"
    assert not partial_files(tmp_path)


def test_changed_object_is_downloaded_again(gcs_emulator, tmp_path):
    bucket = gcs_emulator.bucket({"cube.zip": b"first version"})
    path = download_gcs(f"gs://{bucket}/cube.zip", tmp_path)
    generation = gcs_emulator.upload(bucket, "cube.zip", b"second, longer version")

    assert download_gcs(f"gs://{bucket}/cube.zip", tmp_path) == path
    assert path.read_bytes() == b"second, longer version"
    assert json.loads((path.parent / ".cube.zip.source.json").read_text())["generation"] == generation


def test_prefix_downloads_nested_objects_and_syncs_deletions(gcs_emulator, tmp_path):
    files = {f"train/img_{i}.png": os.urandom(2_000 + i) for i in range(12)}
    files |= {"train/labels/poses.json": b"{}", "train/labels/": b"", "train2/other.png": b"not under the prefix"}
    bucket = gcs_emulator.bucket(files)

    directory = download_gcs(f"gs://{bucket}/train/", tmp_path)

    assert directory == tmp_path / "gcs" / bucket / "train"
    for name, content in files.items():
        if name.startswith("train/") and not name.endswith("/"):
            assert (directory / name.removeprefix("train/")).read_bytes() == content
    assert not (tmp_path / "gcs" / bucket / "train2").exists()
    before = identity(directory / "img_3.png")
    gcs_emulator.delete(bucket, "train/img_0.png")

    download_gcs(f"gs://{bucket}/train/", tmp_path)

    assert identity(directory / "img_3.png") == before
    assert not (directory / "img_0.png").exists() and not (directory / ".img_0.png.source.json").exists()
    assert (directory / ".gcs-prefix.json").is_file()


def test_empty_prefix_is_an_error(gcs_emulator, tmp_path):
    bucket = gcs_emulator.bucket({"train/a.png": b"a"})
    with pytest.raises(StorageError, match=f"no objects under gs://{bucket}/validation/"):
        download_gcs(f"gs://{bucket}/validation/", tmp_path)


def test_leftover_partial_files_are_never_used(gcs_emulator, tmp_path):
    bucket = gcs_emulator.bucket({"cube.zip": b"complete content"})
    folder = tmp_path / "gcs" / bucket
    folder.mkdir(parents=True)
    crashed = folder / f".cube.zip.partial-{dead_pid()}-0badf00d"
    crashed.write_bytes(b"complete con")  # an earlier run died mid-download
    running = folder / f".cube.zip.partial-{os.getpid()}-c0ffee00"
    running.write_bytes(b"comp")  # another download in a live process

    path = download_gcs(f"gs://{bucket}/cube.zip", tmp_path)

    assert path.read_bytes() == b"complete content"
    assert not crashed.exists(), "a dead process's partial file is cleaned up"
    assert running.exists(), "a live process's partial file is left to it"


def test_interrupted_download_leaves_no_file(truncating_gcs, tmp_path):
    with pytest.raises(StorageError, match="gs://b/cube.zip") as info:
        download_gcs("gs://b/cube.zip", tmp_path, retry_timeout=0.5)

    assert "connection to Google Cloud Storage" in str(info.value) and "IncompleteRead" in str(info.value)
    assert any(path.startswith("/download/") for path in truncating_gcs.paths), "the download was attempted"
    folder = tmp_path / "gcs" / "b"
    assert sorted(path.name for path in folder.iterdir()) == []


def test_missing_object_and_bucket_name_the_url(gcs_emulator, tmp_path):
    bucket = gcs_emulator.bucket({"cube.zip": b"x"})
    for url in (f"gs://{bucket}/cube", "gs://no-such-bucket-anywhere/cube.zip", "gs://no-such-bucket-anywhere/x/"):
        with pytest.raises(StorageError, match="not found") as info:
            download_gcs(url, tmp_path)
        assert url in str(info.value)
        assert "Traceback" not in str(info.value) and info.value.__cause__ is None


def test_unwritable_cache_is_a_storage_error(gcs_emulator, tmp_path):
    bucket = gcs_emulator.bucket({"cube.zip": b"x"})
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    with pytest.raises(StorageError, match=f"gs://{bucket}/cube.zip: cannot write the cache"):
        download_gcs(f"gs://{bucket}/cube.zip", not_a_folder)


def test_unauthorized_says_how_to_give_credentials(unauthorized_gcs, tmp_path):
    for url in ("gs://private/cube.zip", "gs://private/train/"):
        with pytest.raises(StorageError) as info:
            download_gcs(url, tmp_path)
        message = str(info.value)
        assert url in message and "HTTP 401" in message and "needs credentials" in message
        assert "gcloud auth application-default login" in message and "GOOGLE_APPLICATION_CREDENTIALS=" in message
    assert unauthorized_gcs.paths, "the requests reached the 401 server"


def test_unreachable_gcs_uses_a_complete_cached_copy(gcs_emulator, tmp_path, monkeypatch, caplog):
    bucket = gcs_emulator.bucket({"cube.zip": b"cached", "train/a.png": b"a", "train/b/c.png": b"c"})
    path = download_gcs(f"gs://{bucket}/cube.zip", tmp_path)
    directory = download_gcs(f"gs://{bucket}/train/", tmp_path)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")  # nothing listens there

    with caplog.at_level(logging.WARNING, logger="cubepose.storage"):
        assert download_gcs(f"gs://{bucket}/cube.zip", tmp_path, retry_timeout=0.3) == path
        assert download_gcs(f"gs://{bucket}/train/", tmp_path, retry_timeout=0.3) == directory
    assert [record.message.startswith("connection to Google Cloud Storage") for record in caplog.records] == [
        True,
        True,
    ]
    with pytest.raises(
        StorageUnreachableError, match=f"connection to Google Cloud Storage .* failed for gs://{bucket}/other.zip"
    ):
        download_gcs(f"gs://{bucket}/other.zip", tmp_path, retry_timeout=0.3)


def test_emulator_serves_other_processes(gcs_emulator, tmp_path):
    bucket = gcs_emulator.bucket({"cube.zip": b"from a subprocess"})
    code = "import sys; from cubepose.storage.gcs import download; print(download(sys.argv[1], sys.argv[2]))"
    command = [sys.executable, "-c", code, f"gs://{bucket}/cube.zip", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).read_bytes() == b"from a subprocess"


def test_client_needs_no_credentials_for_the_emulator(gcs_emulator):
    with gcs_client() as client:
        assert type(client._credentials).__name__ == "AnonymousCredentials"
        assert client.api_endpoint == gcs_emulator.host


def test_client_without_credentials_is_anonymous(tmp_path):
    # A fresh process, as google.auth reads NO_GCE_CHECK at import; no metadata-server probe leaves the machine.
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")}
    env |= {"CLOUDSDK_CONFIG": str(tmp_path), "HOME": str(tmp_path), "NO_GCE_CHECK": "true"}
    code = (
        "from cubepose.storage.gcs import gcs_client; c = gcs_client(); print(type(c._credentials).__name__, c.project)"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["AnonymousCredentials", "None"]
