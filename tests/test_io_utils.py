"""Atomic writes: all or nothing, and files others can read as a plain open() would make them."""

from __future__ import annotations

import os
import stat
import zipfile

import pytest

from cubepose.data.sources import local_root
from cubepose.io.atomic import atomic_open, atomic_write_text
from cubepose.synth.generate import GenerationOptions, generate_dataset


@pytest.fixture(params=[0o022, 0o007])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


def test_atomic_files_get_the_umask_permissions_not_mkstemps_0600(tmp_path, umask):
    atomic_write_text(tmp_path / "report.html", "<html></html>")
    assert _mode(tmp_path / "report.html") == 0o666 & ~umask


def test_generated_datasets_and_extracted_zips_are_readable_by_the_group(tmp_path, umask):
    generate_dataset(tmp_path / "data", GenerationOptions(count=2, seed=0, image_size=16))
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert files and {_mode(p) for p in files} == {0o666 & ~umask}
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as archive:
        for path in files:
            archive.write(path, path.relative_to(tmp_path / "data").as_posix())
    assert _mode(local_root(str(tmp_path / "export.zip"))) == 0o777 & ~umask
