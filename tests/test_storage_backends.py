"""One mapping from a location string to its storage backend, and what every entry point does with it.

A local path, gs:// and http(s):// each resolve to their backend; a ``<scheme>://`` no backend
handles is refused with one message naming it and the supported schemes (never read as a local
path); http(s):// is read-only, and every way of writing to it says so with the same message.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cubepose.cli import main
from cubepose.data.sources import local_root
from cubepose.errors import CubeposeError
from cubepose.storage import (
    GCS,
    HTTP,
    LOCAL,
    S3,
    Operation,
    StorageError,
    Uploader,
    backend_for,
    fetch,
    is_gcs_url,
    is_http_url,
    is_remote,
    scheme_of,
    upload_folder,
)

UNKNOWN = ["az://container/model-1.ckpt", "ftp://host/data/", "file:///tmp/model.ckpt", "GS://bucket/x", "S3://b/x"]
SUPPORTED_NAMED = ("a local path", "gs://", "s3://", "http://", "https://")


@pytest.mark.parametrize(
    ("location", "backend"),
    [
        ("/data/cube", LOCAL),
        ("runs/model-1.ckpt", LOCAL),
        ("~/data", LOCAL),
        ("C:\\data\\cube", LOCAL),  # a drive letter is no scheme
        (Path("/data/gs:/x"), LOCAL),
        ("gs://bucket/data/train.zip", GCS),
        ("gs://bucket/prefix/", GCS),
        ("s3://bucket/data/train.zip", S3),
        ("s3://bucket/prefix/", S3),
        ("http://127.0.0.1:8000/model-1.ckpt", HTTP),
        ("https://example.com/model-1.ckpt", HTTP),
    ],
)
def test_each_location_resolves_to_its_backend(location, backend):
    assert backend_for(location) is backend
    assert is_remote(location) == backend.remote
    assert is_gcs_url(location) == (backend is GCS) and is_http_url(location) == (backend is HTTP)


def test_only_http_is_read_only_and_every_backend_downloads_files():
    assert HTTP.read_only and not GCS.read_only and not S3.read_only and not LOCAL.read_only
    assert all(b.supports(Operation.DOWNLOAD_FILE) for b in (LOCAL, GCS, S3, HTTP))
    assert not HTTP.supports(Operation.DOWNLOAD_FOLDER)
    assert scheme_of("https://example.com/x") == "https" and scheme_of("/data") is None and scheme_of(None) is None
    assert not is_gcs_url(None) and not is_http_url(None) and not is_remote(None)


@pytest.mark.parametrize("location", UNKNOWN)
def test_unknown_scheme_is_one_clear_error_naming_it_and_the_supported_ones(location):
    with pytest.raises(StorageError) as info:
        backend_for(location)
    message = str(info.value)
    assert location in message and location.partition("://")[0] + ":// is not supported" in message
    assert all(name in message for name in SUPPORTED_NAMED)
    assert isinstance(info.value, CubeposeError)
    assert is_remote(location) and not is_gcs_url(location) and not is_http_url(location)


def test_every_entry_point_refuses_an_unknown_scheme_instead_of_using_a_local_path(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # the old behaviour wrote or looked for ./az:/bucket/...
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "log.txt").write_text("step 1\n")
    calls = [
        lambda: fetch("az://bucket/model-1.ckpt", tmp_path / "cache"),
        lambda: Uploader("az://bucket/runs"),
        lambda: upload_folder(folder, "az://bucket/runs"),
        lambda: local_root("az://bucket/data/", str(tmp_path / "cache")),
    ]
    for call in calls:
        with pytest.raises(StorageError, match="no storage backend for az://bucket/.*az:// is not supported"):
            call()
    assert main(["generate", "az://bucket/data", "--count", "3", "--image-size", "32", "--workers", "1"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "no storage backend for az://bucket/data: az:// is not supported; give a local path or a gs://, s3://, "
        "http://, https:// URL"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("destination", ["https://example.com/runs", "http://127.0.0.1:8000/runs"])
def test_writing_to_http_is_refused_with_one_message_everywhere(destination, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "log.txt").write_text("step 1\n")
    expected = f"cannot upload to {destination}: give gs://bucket/prefix, s3://bucket/prefix or a local folder"
    for call in (lambda: Uploader(destination), lambda: upload_folder(folder, destination)):
        with pytest.raises(StorageError) as info:
            call()
        assert str(info.value) == expected
    assert main(["generate", destination, "--count", "3", "--image-size", "32", "--workers", "1"]) == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [expected]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no ./http:/... folder rendered


def test_a_dataset_root_over_http_is_refused_naming_the_forms_that_work(tmp_path):
    with pytest.raises(StorageError) as info:
        local_root("https://example.com/data/train.zip", str(tmp_path))
    assert str(info.value) == (
        "cannot download a folder from https://example.com/data/train.zip: give a local folder, gs://bucket/prefix/ "
        "or s3://bucket/prefix/"
    )
