"""Files on this machine: atomic writes are all or nothing and readable as a plain open() would make them;
temporaries name their writer, and only those whose writer is gone (old names included) are removed; locks."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile

import pytest

from cubepose.data.sources import local_root
from cubepose.io.atomic import atomic_open, atomic_write_text
from cubepose.io.locks import Lock, is_locked
from cubepose.io.temporary import (
    is_temporary,
    parse_temporary,
    remove_orphans,
    remove_orphans_under,
    temporary_beside,
    temporary_path,
)
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


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_one_temporary_name_records_the_writer_and_older_names_are_still_recognised(tmp_path):
    name = temporary_path(tmp_path / "model-7.ckpt").name
    assert name.startswith(".model-7.ckpt.") and name.endswith(".tmp") and is_temporary(name)
    assert (parse_temporary(name).target, parse_temporary(name).pid) == ("model-7.ckpt", os.getpid())
    older = {
        ".cube.zip.partial-123-0badf00d": ("cube.zip", 123),
        ".cube.extracting-45-abcd_123": ("cube", 45),
        ".model-7.ckpt.k3j9x_2a.tmp": ("model-7.ckpt", None),
    }
    assert {n: (parse_temporary(n).target, parse_temporary(n).pid) for n in older} == older
    assert not any(map(is_temporary, ["model-7.ckpt", ".cube.zip.source.json", "rgb_2.png", ".hidden"]))


def test_only_orphans_are_removed_and_names_without_a_writer_only_by_a_caller_alone(tmp_path):
    dead = _dead_pid()
    orphan = tmp_path / f".a.png.{dead}-0badf00d.tmp"
    old_download = tmp_path / f".cube.zip.partial-{dead}-0badf00d"
    old_extraction = tmp_path / f".cube.extracting-{dead}-abcd1234"
    live = tmp_path / f".b.png.{os.getpid()}-c0ffee00.tmp"
    locked = tmp_path / f".c.png.{dead}-00000001.tmp"  # a writer in another container: its pid means nothing here
    anonymous = tmp_path / ".d.png.k3j9x.tmp"
    for path in (orphan, old_download, live, locked, anonymous):
        path.write_bytes(b"half")
    (old_extraction / "export").mkdir(parents=True)
    with Lock.open(locked) as lock:
        assert lock.exclusive() and is_locked(locked)
        assert remove_orphans(tmp_path, "cube.zip") == 1 and not old_download.exists()
        assert remove_orphans(tmp_path) == 2
        assert not orphan.exists() and not old_extraction.exists()
        assert live.exists() and locked.exists() and anonymous.exists()
    assert remove_orphans(tmp_path, alone=True) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]


def test_orphans_are_removed_below_a_folder_and_a_temporary_folder_is_one_temporary(tmp_path):
    dead = _dead_pid()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (deep / f".x.{dead}-00000002.tmp").write_bytes(b"half")
    staging = tmp_path / f".a.{os.getpid()}-00000003.tmp"  # a folder being written by this process
    staging.mkdir()
    (staging / f".y.{dead}-00000004.tmp").write_bytes(b"its own business")
    assert remove_orphans_under(tmp_path) == 1
    assert not any(deep.iterdir()) and len(list(staging.iterdir())) == 1


def test_a_temporary_is_locked_while_written_and_gone_after_a_failure(tmp_path, umask):
    with pytest.raises(RuntimeError), temporary_beside(tmp_path / "cache.npy") as temporary:
        assert is_locked(temporary) and remove_orphans(tmp_path, alone=True) == 0
        assert _mode(temporary) == 0o666 & ~umask
        raise RuntimeError("killed mid-build")
    with temporary_beside(tmp_path / "cube", folder=True) as folder:
        assert folder.is_dir() and is_locked(folder) and _mode(folder) == 0o777 & ~umask
    assert not any(tmp_path.iterdir())


def test_an_exclusive_lock_waits_for_no_one_and_keeps_the_shared_one_it_had(tmp_path):
    with Lock.open(tmp_path) as mine, Lock.open(tmp_path) as other:
        mine.shared()
        other.shared()
        assert not mine.exclusive() and mine.held == "shared"
        assert not is_locked(tmp_path)  # shared holders only
        other.close()
        assert mine.exclusive() and is_locked(tmp_path)


def test_text_is_written_as_utf8_whatever_the_locale(tmp_path):
    """report.html declares UTF-8 and errors.csv may name accented paths: a C locale must not refuse or garble them."""
    path = tmp_path / "errors.csv"
    text = "path\\ncaf\\u00e9.png\\n"  # escaped: a C locale's command line holds ASCII only
    code = f"from cubepose.io.atomic import atomic_write_text; atomic_write_text({str(path)!r}, '{text}')"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    assert path.read_bytes() == "path\ncafé.png\n".encode()
