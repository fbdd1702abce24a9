"""http(s):// downloads, the sha256 pin, and uploads to gs:// (the real emulator) or a folder."""

from __future__ import annotations

import hashlib
import logging
import os

import pytest
from gcs_fixtures import free_port
from http_fixtures import TRUNCATED_PATH

from cubepose.io.temporary import is_temporary
from cubepose.storage import StorageError, StorageUnreachableError, Uploader, fetch
from cubepose.storage.gcs import download as download_gcs
from cubepose.storage.gcs import upload_file as upload_gcs
from cubepose.storage.http import download as download_http


def test_http_download_is_cached_revalidated_and_refreshed_when_the_file_changes(file_server, tmp_path):
    served = file_server.folder / "model-10.ckpt"
    served.write_bytes(os.urandom(3_000_000))
    url = f"{file_server.url}/model-10.ckpt"

    path = download_http(url, tmp_path / "cache")
    assert path.name == "model-10.ckpt" and path.read_bytes() == served.read_bytes()
    inode = path.stat().st_ino
    assert download_http(url, tmp_path / "cache") == path and path.stat().st_ino == inode
    assert file_server.statuses == [200, 304]  # the second call only asked whether it changed

    served.write_bytes(b"a new version")
    os.utime(served, (served.stat().st_atime + 5, served.stat().st_mtime + 5))
    assert download_http(url, tmp_path / "cache").read_bytes() == b"a new version"
    assert not [p for p in path.parent.iterdir() if is_temporary(p.name)]


def test_http_errors_name_the_url_and_never_leave_a_file(file_server, tmp_path):
    with pytest.raises(StorageError, match=r"model-404.ckpt: HTTP 404 .*check the URL"):
        download_http(f"{file_server.url}/model-404.ckpt", tmp_path)
    with pytest.raises(StorageError, match=r"truncated.ckpt broke off .* of 100000 bytes saved; run again"):
        download_http(file_server.url + TRUNCATED_PATH, tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    with pytest.raises(StorageUnreachableError, match="cannot reach http://127.0.0.1"):
        download_http(f"http://127.0.0.1:{free_port()}/model-1.ckpt", tmp_path)


def test_http_cached_copy_is_used_when_the_server_is_gone(file_server, tmp_path, caplog):
    (file_server.folder / "m.ckpt").write_bytes(b"weights")
    url = f"{file_server.url}/m.ckpt"
    path = download_http(url, tmp_path)
    file_server.stop()
    with caplog.at_level(logging.WARNING):
        assert download_http(url, tmp_path) == path
    assert "using the cached copy" in caplog.text and path.read_bytes() == b"weights"


def test_fetch_checks_the_sha256_pin_for_every_kind_of_location(file_server, gcs_emulator, tmp_path):
    content = os.urandom(10_000)
    digest = hashlib.sha256(content).hexdigest()
    local = tmp_path / "model-5.ckpt"
    local.write_bytes(content)
    (file_server.folder / "model-5.ckpt").write_bytes(content)
    bucket = gcs_emulator.bucket({"runs/model-5.ckpt": content})
    cache = tmp_path / "cache"
    for location in (str(local), f"{file_server.url}/model-5.ckpt", f"gs://{bucket}/runs/model-5.ckpt"):
        assert fetch(location, cache, sha256=digest).read_bytes() == content
        assert fetch(location, cache, sha256=digest.upper()).read_bytes() == content
        with pytest.raises(StorageError, match=f"sha256 of {location} is {digest}, but the pin says 00ab"):
            fetch(location, cache, sha256="00ab")
    with pytest.raises(StorageError, match="does not exist or is not a file"):
        fetch(tmp_path / "missing.ckpt", cache)
    with pytest.raises(StorageError, match="is a prefix; name one object"):
        fetch(f"gs://{bucket}/runs/", cache)


def test_upload_to_gcs_round_trips_and_replaces(gcs_emulator, tmp_path):
    bucket = gcs_emulator.bucket()
    local = tmp_path / "model-3.ckpt"
    local.write_bytes(os.urandom(200_000))
    first = upload_gcs(local, f"gs://{bucket}/runs/a/model-3.ckpt")
    assert download_gcs(f"gs://{bucket}/runs/a/model-3.ckpt", tmp_path / "cache").read_bytes() == local.read_bytes()
    local.write_bytes(b"replaced")
    assert upload_gcs(local, f"gs://{bucket}/runs/a/model-3.ckpt") != first
    assert download_gcs(f"gs://{bucket}/runs/a/model-3.ckpt", tmp_path / "cache").read_bytes() == b"replaced"


def test_uploader_copies_in_order_to_gcs_and_to_a_folder(gcs_emulator, tmp_path):
    bucket = gcs_emulator.bucket()
    files = []
    for step in (1, 2, 3):
        files.append(tmp_path / f"model-{step}.ckpt")
        files[-1].write_bytes(os.urandom(1000 + step))
    for destination in (f"gs://{bucket}/runs/exp/", str(tmp_path / "mirror" / "exp")):
        uploader = Uploader(destination)
        futures = [uploader.submit(path) for path in files]
        uploader.close()
        assert [f.result() for f in futures] == [True] * 3 and not uploader.failed
        for path in files:
            copy = fetch(uploader.target(path.name), tmp_path / "cache")
            assert copy.read_bytes() == path.read_bytes()
    assert uploader.target("model-1.ckpt") == str(tmp_path / "mirror" / "exp" / "model-1.ckpt")


def test_failed_upload_is_retried_then_reported_and_the_local_copy_kept(gcs_emulator, tmp_path, caplog):
    local = tmp_path / "model-7.ckpt"
    local.write_bytes(b"weights")
    uploader = Uploader("gs://no-such-bucket-for-cubepose/runs/exp", attempts=3, backoff=0.01)
    with caplog.at_level(logging.WARNING):
        future = uploader.submit(local)
        uploader.close()
    assert future.result() is False and uploader.failed == [
        (local, "gs://no-such-bucket-for-cubepose/runs/exp/model-7.ckpt")
    ]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "upload of" in r.getMessage()]
    assert len(warnings) == 2  # attempts 2 and 3 announced
    assert "failed after 3 attempts" in caplog.text and "the local copy is kept" in caplog.text
    assert f"gcloud storage cp {local} gs://no-such-bucket-for-cubepose/runs/exp/model-7.ckpt" in caplog.text
    assert local.read_bytes() == b"weights"


def test_uploads_refuse_http_destinations():
    with pytest.raises(StorageError, match="give gs://bucket/prefix, s3://bucket/prefix or a local folder"):
        Uploader("https://example.com/runs")
