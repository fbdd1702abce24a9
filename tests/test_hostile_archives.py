"""Hostile and broken input on real files: changed zips over user files, zip bombs, decompression-bomb
images and the temporaries of killed image-cache builds."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from image_headers import png_header_claiming

from conftest import load_configs
from cubepose.cli import main as cli_main
from cubepose.config import validate_config
from cubepose.data.archives import MARKER, copy_capped, extract_zip
from cubepose.data.formats import read_dataset
from cubepose.data.image_cache import cached_images
from cubepose.data.image_check import CORRUPT, OK, OVERSIZED, PROBLEM_NAMES, declared_size, image_status
from cubepose.data.images import decode_resized
from cubepose.errors import CubeposeError, DatasetError
from cubepose.inference.predictor import PosePredictor
from cubepose.models import PoseNet
from cubepose.synth.generate import GenerationOptions, generate_dataset

BOMB = (50000, 50000)  # 2.5 Gpx: over twice PIL's limit, where PIL raises
WARNED = (14000, 14000)  # 196 Mpx: between PIL's limit and twice it, where PIL only warns and decodes


# -- helpers: real files ------------------------------------------------------------------------


def write_png_header(path: Path, width: int, height: int) -> Path:
    """``image_headers.png_header_claiming`` written to ``path``."""
    path.write_bytes(png_header_claiming(width, height))
    return path


def write_jpeg_header(path: Path, width: int, height: int) -> Path:
    """A JPEG's frame structure (SOI, an APP0 segment, a baseline frame header, EOI) declaring any size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    path.write_bytes(b"\xff\xd8" + app0 + sof0 + b"\xff\xd9")
    return path


def zip_files(archive: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for name, data in files.items():
            handle.writestr(name, data)
    return archive


def touch_newer(path: Path) -> None:
    """Give ``path`` a later mtime, as a replaced archive has."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


@pytest.fixture
def copy_of(tiny_data, tmp_path):
    def copy(split: str) -> Path:
        return Path(shutil.copytree(tiny_data[split], tmp_path / split))

    return copy


def legacy_images(root: Path) -> list[Path]:
    """The images of a generated legacy dataset in capture order."""
    captures = json.loads(next(root.glob("Dataset*/captures_000.json")).read_text())["captures"]
    return [root / capture["filename"] for capture in captures]


# -- re-extracting a changed zip never deletes what cubepose did not extract ------------------------


EXPORT = {"export/Dataset1/captures_000.json": b'{"captures": []}', "export/RGB1/rgb_2.png": b"png bytes"}


def test_changed_zip_is_not_extracted_over_files_the_user_added(tmp_path):
    archive = zip_files(tmp_path / "cube.zip", EXPORT)
    root = extract_zip(archive)
    assert sorted(json.loads((root / MARKER).read_text())["extracted"]) == sorted(EXPORT)
    (root / "export" / "notes.txt").write_text("my notes")
    for i in range(6):
        (root / f"mine-{i}.png").write_bytes(b"mine")
    zip_files(archive, {**EXPORT, "export/RGB1/rgb_3.png": b"new capture"})
    touch_newer(archive)
    with pytest.raises(DatasetError) as info:
        extract_zip(archive)
    message = str(info.value)
    assert "cube.zip changed, but" in message and "holds 7 file(s) that cubepose did not extract" in message
    assert "export/notes.txt, mine-0.png" in message and "and 2 more" in message
    assert (
        f"{root} holds 7 file(s)" in message and "move those files out of it, or delete the folder yourself" in message
    )
    assert (root / "export" / "notes.txt").read_text() == "my notes" and len(list(root.glob("mine-*.png"))) == 6
    assert not (root / "export" / "RGB1" / "rgb_3.png").exists()

    (root / "export" / "notes.txt").unlink()
    for path in root.glob("mine-*.png"):
        path.unlink()
    assert extract_zip(archive) == root  # only our files left: replaced as before
    assert (root / "export" / "RGB1" / "rgb_3.png").read_bytes() == b"new capture"
    assert not list(tmp_path.glob(".cube.*.tmp"))


def test_changed_zip_is_not_extracted_over_files_the_user_edited(tmp_path):
    archive = zip_files(tmp_path / "cube.zip", EXPORT)
    root = extract_zip(archive)
    captures = root / "export" / "Dataset1" / "captures_000.json"
    captures.write_bytes(b'{"captures": [] }')  # an edit: one byte longer
    image = root / "export" / "RGB1" / "rgb_2.png"
    image.write_bytes(b"PNG bytes")  # an edit of the same size
    zip_files(archive, {**EXPORT, "export/RGB1/rgb_3.png": b"new capture"})
    touch_newer(archive)  # as a re-download or a cp without -p leaves it
    with pytest.raises(DatasetError) as info:
        extract_zip(archive)
    message = str(info.value)
    assert "2 file(s) in" in message and "were edited after cubepose extracted them" in message
    assert "export/Dataset1/captures_000.json, export/RGB1/rgb_2.png" in message and "copy them out" in message
    assert captures.read_bytes() == b'{"captures": [] }' and image.read_bytes() == b"PNG bytes"

    captures.write_bytes(EXPORT["export/Dataset1/captures_000.json"])  # edits undone: contents as extracted,
    image.write_bytes(EXPORT["export/RGB1/rgb_2.png"])  # though their mtimes moved on
    assert extract_zip(archive) == root
    assert (root / "export" / "RGB1" / "rgb_3.png").read_bytes() == b"new capture"


def test_a_killed_extraction_leaves_nothing_after_the_next_start(tmp_path):
    archive = zip_files(tmp_path / "cube.zip", EXPORT)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".cube.extracting-{int(dead.stdout)}-abcd1234"  # its process has exited
    (orphan / "export").mkdir(parents=True)
    (orphan / "export" / "half.png").write_bytes(b"half written")
    live = tmp_path / f".cube.extracting-{os.getpid()}-efgh5678"  # another extraction of this process: kept
    live.mkdir()
    assert extract_zip(archive) == tmp_path / "cube"
    assert not orphan.exists() and live.is_dir()


def test_a_marker_of_an_older_cubepose_replaces_only_files_the_new_archive_recreates(tmp_path):
    archive = zip_files(tmp_path / "cube.zip", EXPORT)
    root = extract_zip(archive)
    marker = json.loads((root / MARKER).read_text())
    old = {key: marker[key] for key in ("archive", "size", "mtime_ns")}
    (root / MARKER).write_text(json.dumps({**old, "files": len(EXPORT)}))  # the format without a file list
    (root / "mine.txt").write_text("user data")
    zip_files(archive, {**EXPORT, "export/RGB1/rgb_2.png": b"re-rendered"})
    touch_newer(archive)
    with pytest.raises(DatasetError, match=r"an older cubepose extracted it without listing its files\): mine.txt"):
        extract_zip(archive)
    assert (root / "mine.txt").read_text() == "user data"
    (root / "mine.txt").unlink()
    extract_zip(archive)  # every file there is re-created by the new archive: nothing can be lost
    assert (root / "export" / "RGB1" / "rgb_2.png").read_bytes() == b"re-rendered"


# -- zip bombs ------------------------------------------------------------------------------------


def test_a_zip_that_expands_by_a_zip_bombs_ratio_is_refused_before_writing(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle, handle.open("zeros.bin", "w") as member:
        for _ in range(8):
            member.write(bytes(2**20))  # 8 MiB of zeros deflate to ~8 KB: a ratio near 1000
    with pytest.raises(DatasetError) as info:
        extract_zip(archive)
    message = str(info.value)
    assert message.startswith(f"{archive} would expand") and re.search(
        r"expand \d{3,4}x, from [\d.]+ KB to 8.4 MB", message
    )
    assert "refuses archives that expand more than 100x" in message
    assert "extract it yourself and point data/<split>/root at the folder" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip"]


def test_a_zip_declaring_more_than_the_free_disk_space_is_refused(tmp_path):
    archive = tmp_path / "huge.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("capture.png", b"small data")
        handle.infolist()[0].file_size = 10**15  # the central directory declares 1 PB (zip64)
    with pytest.raises(DatasetError, match=r"huge.zip would expand to 1000.0 TB .* free .*make room there, or extract"):
        extract_zip(archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.zip"]


def test_a_zip_of_a_compression_method_python_lacks_says_to_extract_it_yourself(tmp_path):
    archive = tmp_path / "windows.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("capture.png", b"data")
        handle.infolist()[0].compress_type = 9  # Deflate64, which Windows uses for large files
    with pytest.raises(DatasetError, match=r"cannot extract .*windows.zip \(.*compression.*\); extract it yourself"):
        extract_zip(archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["windows.zip"]


def test_extraction_stops_a_member_at_the_size_its_header_declares(tmp_path):
    with open(tmp_path / "out", "wb") as out:
        assert copy_capped(io.BytesIO(bytes(3 * 2**20)), out, 3 * 2**20, "member a") == 3 * 2**20
    with open(tmp_path / "out", "wb") as out, pytest.raises(DatasetError, match="member b expands past the 2,097,152"):
        copy_capped(io.BytesIO(bytes(3 * 2**20)), out, 2 * 2**20, "member b")
    assert (tmp_path / "out").stat().st_size <= 2 * 2**20


# -- decompression-bomb images -------------------------------------------------------------------


def test_image_headers_give_the_declared_size_and_oversized_images_are_a_problem(tmp_path):
    assert PROBLEM_NAMES[OVERSIZED] == "oversized image"
    assert declared_size(write_png_header(tmp_path / "a.png", *BOMB)) == BOMB
    assert image_status(str(tmp_path / "a.png")) == OVERSIZED
    assert image_status(str(write_png_header(tmp_path / "b.png", *WARNED))) == OVERSIZED
    assert image_status(str(write_png_header(tmp_path / "c.png", 640, 480))) == OK
    assert declared_size(write_jpeg_header(tmp_path / "d.jpg", 60000, 40000)) == (60000, 40000)
    assert image_status(str(tmp_path / "d.jpg")) == OVERSIZED
    assert image_status(str(write_jpeg_header(tmp_path / "e.jpg", 640, 480))) == OK
    (tmp_path / "f.png").write_bytes((tmp_path / "a.png").read_bytes()[:-12])  # truncated: corrupt, not oversized
    assert image_status(str(tmp_path / "f.png")) == CORRUPT


def test_oversized_images_are_skipped_at_indexing_and_counted_by_inspect(copy_of, capsys):
    root = copy_of("validation")
    images = legacy_images(root)
    write_png_header(images[0], *BOMB)  # the first image: the one legacy data takes its camera size from
    write_png_header(images[5], *WARNED)
    index = read_dataset(root)
    assert len(index) == 14 and index.skipped == {"oversized image": 2}
    assert cli_main(["inspect", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped"] == {"oversized image": 2} and summary["examples"] == 14


@pytest.mark.parametrize("size", [BOMB, WARNED], ids=["over-twice-the-limit", "over-the-limit"])
def test_decoding_an_oversized_image_names_the_file_its_size_and_the_fix(tmp_path, size):
    path = write_png_header(tmp_path / "huge.png", *size)
    pixels = f"{size[0] * size[1]:,}"
    with pytest.raises(DatasetError) as info:
        decode_resized(str(path), 16)
    assert f"image {path} declares {size[0]} x {size[1]} = {pixels} pixels" in str(info.value)
    assert "resize the image, or remove it (in a dataset: remove its capture)" in str(info.value)


@pytest.fixture
def bomb(tmp_path) -> Path:
    return write_png_header(tmp_path / "bomb.png", *BOMB)


def named(path: Path) -> str:
    return re.escape(f"image {path} declares 50000 x 50000")


def test_building_the_image_cache_names_an_oversized_image(tiny_data, bomb, tmp_path):
    good = sorted(str(p) for p in tiny_data["test"].rglob("*.png"))[:3]
    with pytest.raises(DatasetError, match=named(bomb)):
        cached_images(np.array([*good, str(bomb)]), 16, tmp_path / "cache", workers=1)


def test_predict_names_an_oversized_image(tiny_data, bomb):
    config = validate_config(load_configs("base.yaml", "cpu.yaml"))
    predictor = PosePredictor(PoseNet(config), config)
    assert predictor.prepare_item(str(next(tiny_data["test"].rglob("*.png")))).shape == (64, 64, 3)
    with pytest.raises(CubeposeError, match=named(bomb)):
        predictor.prepare_item(str(bomb))


def test_generate_names_an_oversized_background(bomb, tmp_path):
    backgrounds = tmp_path / "backgrounds"
    backgrounds.mkdir()
    shutil.copy(bomb, backgrounds / "sky.png")
    options = GenerationOptions(count=1, image_size=16, backgrounds=str(backgrounds))
    with pytest.raises(DatasetError, match=named(backgrounds / "sky.png")):
        generate_dataset(tmp_path / "rendered", options)


# -- temporaries of killed image-cache builds -------------------------------------------------------


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


HOLD_LOCK = """
import fcntl, sys
handle = open(sys.argv[1], "rb")
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def test_temporaries_of_killed_cache_builds_are_removed_and_live_ones_kept(tiny_data, tmp_path):
    images = tmp_path / "cache" / "images"
    images.mkdir(parents=True)
    dead = _dead_pid()
    killed = images / f".0123456789abcdef01234567-16px.npy.partial-{dead}-0badf00d"
    killed.write_bytes(bytes(4096))
    ours = images / f".fedcba9876543210fedcba98-16px.npy.partial-{os.getpid()}-00000001"
    ours.write_bytes(b"a build of this process")
    # a live build in another pid namespace (a container sharing the cache): its pid means nothing here
    elsewhere = images / f".aaaaaaaaaaaaaaaaaaaaaaaa-16px.npy.partial-{dead}-00000002"
    elsewhere.write_bytes(b"a build holding its lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(elsewhere)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        paths = np.array(sorted(str(p) for p in tiny_data["test"].rglob("*.png"))[:4])
        assert cached_images(paths, 16, tmp_path / "cache", workers=1).shape == (4, 16, 16, 3)
        assert not killed.exists()
        assert ours.exists() and elsewhere.exists()
        assert len(list(images.glob("*.npy"))) == 1
    finally:
        holder.communicate("")
    cached_images(paths, 16, tmp_path / "cache", workers=1)  # the lock is gone with its process
    assert not elsewhere.exists() and ours.exists()
