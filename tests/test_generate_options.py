"""`cubepose generate` with impossible options, and re-runs after a refused, failed or killed run.

Impossible options stop with one line naming the flag before anything is written; a run that
finished no frame leaves nothing that blocks the corrected command; a killed run's partial files
neither block nor pollute the re-run, locally or in a gs:// output's staging folder.
"""

from __future__ import annotations

import fcntl
import filecmp
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN
from cubepose.cli import main
from cubepose.data.shards import MANIFEST
from cubepose.storage import default_cache_dir
from cubepose.synth.generate import GenerationOptions, generate_dataset
from cubepose.synth.scene import SceneOptions

SMALL = ["--count", "3", "--image-size", "32", "--workers", "1"]


def files_of(root: Path) -> dict[str, Path]:
    """Every file below ``root``, hidden ones included, by relative path."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def same_files(a: Path, b: Path) -> bool:
    """Whether two folders hold the same sub-folders and files, byte for byte."""
    left, right = files_of(a), files_of(b)
    if {p.relative_to(a) for p in a.rglob("*")} != {p.relative_to(b) for p in b.rglob("*")}:
        return False
    return all(filecmp.cmp(left[k], right[k], shallow=False) for k in left)


def refused(out: Path, args: list[str], caplog: pytest.LogCaptureFixture) -> str:
    """Run ``cubepose generate out args`` in-process; assert exit 2 and one single-line error; return it."""
    caplog.clear()
    assert main(["generate", str(out), *args]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    return errors[0]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--fov", "0"], "--fov must be strictly between 0 and 180"),
        (["--fov", "180"], "--fov must be strictly between 0 and 180"),
        (["--fov", "-30"], "--fov must be strictly between 0 and 180"),
        (["--fov", "nan"], "--fov must be finite"),
        (["--fov", "inf"], "--fov must be finite"),
        (["--fov", "70", "50", "--format", "solo"], "--fov: the range LO HI needs LO <= HI"),
        (["--fov", "50", "60", "70"], "--fov takes one value or a range LO HI"),
        (["--min-distance", "0"], "--min-distance must be between 0.15 and 50"),
        (["--min-distance", "-1", "--max-distance", "1"], "--min-distance must be between"),
        (["--max-distance", "-0.5"], "--max-distance must be between"),
        (["--max-distance", "nan"], "--max-distance must be between"),
        (["--min-distance", "inf"], "--min-distance must be between"),
        (["--min-distance", "0.5", "--max-distance", "0.4"], "--min-distance 0.5 is more than --max-distance 0.4"),
        (["--min-distance", "0.6"], "beyond preset default's farthest distance 0.55; give --max-distance too"),
        (
            ["--max-distance", "1", "--preset", "ur3"],
            "nearer than preset ur3's nearest distance 1.6; give --min-distance",
        ),
        (["--image-size", "0"], "--image-size must be 16-4096 pixels"),
        (["--image-size", "15"], "--image-size must be 16-4096 pixels"),
        (["--image-size", "5000"], "--image-size must be 16-4096 pixels"),
        (["--count", "0"], "--count must be at least 1"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--workers", "-2"], "--workers must be at least 1"),
        (["--max-distractors", "-1"], "--max-distractors must be between 0 and 100"),
        (["--max-distractors", "1000000"], "--max-distractors must be between 0 and 100"),
        (["--backgrounds", "no-such-folder"], "--backgrounds no-such-folder does not exist"),
        (["--seed", "-1"], "--seed must be 0 or more"),
        (["--shards", "0"], "--shards N of at least 1"),
        (["--shard", "2", "--shards", "2"], "--shard must be in 0..1"),
    ],
)
def test_impossible_options_are_refused_before_anything_is_written(tmp_path, caplog, flags, named):
    out = tmp_path / "parent" / "out"
    message = refused(out, [*SMALL, *flags], caplog)
    assert named in message
    assert not (tmp_path / "parent").exists()


def test_a_backgrounds_file_is_named_and_nothing_is_written(tmp_path, caplog):
    (tmp_path / "bg.png").write_bytes(b"not a folder")
    message = refused(tmp_path / "out", [*SMALL, "--backgrounds", str(tmp_path / "bg.png")], caplog)
    assert "is a file; give a folder of .png or .jpg images" in message
    assert not (tmp_path / "out").exists()


def test_the_installed_command_prints_one_line_without_a_traceback(tmp_path):
    command = [str(BIN / "cubepose"), "generate", str(tmp_path / "out"), *SMALL, "--fov", "nan"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--fov must be finite" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_the_python_api_refuses_the_same_options(tmp_path):
    with pytest.raises(ValueError, match="--fov must be strictly between"):
        SceneOptions(vertical_fov_deg=(180.0, 180.0))
    with pytest.raises(ValueError, match="--min-distance/--max-distance: the range LO HI needs LO <= HI"):
        SceneOptions(distance=(0.6, 0.3))
    with pytest.raises(ValueError, match="SceneOptions.noise must be finite"):
        SceneOptions(noise=(0.0, float("nan")))
    with pytest.raises(ValueError, match="--image-size must be 16-4096"):
        generate_dataset(tmp_path / "out", GenerationOptions(count=2, image_size=8))
    with pytest.raises(ValueError, match="--workers must be at least 1"):
        generate_dataset(tmp_path / "out", GenerationOptions(count=2, image_size=32, workers=0))
    assert not (tmp_path / "out").exists()


def test_a_run_that_fails_before_its_first_frame_leaves_nothing(tmp_path):
    env = {**os.environ, "GLCONTEXT_LINUX_LIBEGL": str(tmp_path / "libEGL.so.1")}  # no OpenGL: fails in frame 0
    out = tmp_path / "new" / "out"
    command = [str(BIN / "cubepose"), "generate", str(out), *SMALL, "--seed", "4"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and "cannot create a headless OpenGL context" in result.stderr
    assert not (tmp_path / "new").exists()
    assert main(["generate", str(out), *SMALL]) == 0  # the corrected command, with other options


def leave_a_killed_run(folder: Path, args: list[str], tmp_path: Path) -> None:
    """Leave in ``folder`` what ``generate args`` leaves when killed before its first frame.

    Its manifest and empty layout folders come from a real run; each folder gets a partial write.
    """
    model = tmp_path / "model"
    assert main(["generate", str(model), *args]) == 0
    folder.mkdir(parents=True)
    shutil.copy(model / MANIFEST, folder / MANIFEST)
    for sub in sorted(p.relative_to(model) for p in model.rglob("*") if p.is_dir()):
        (folder / sub).mkdir()
        (folder / sub / ".rgb_2.png.k3j9x.tmp").write_bytes(b"half an image")
    shutil.rmtree(model)


def test_a_corrected_command_reclaims_a_folder_left_without_frames(tmp_path, caplog):
    reference = tmp_path / "reference"
    assert main(["generate", str(reference), *SMALL, "--seed", "1"]) == 0
    out = tmp_path / "out"
    leave_a_killed_run(out, [*SMALL, "--seed", "9", "--format", "solo"], tmp_path)
    assert main(["generate", str(out), *SMALL, "--seed", "1"]) == 0
    assert same_files(reference, out)  # no stale folders, no partial files, the new manifest


def test_a_folder_with_frames_of_other_options_is_still_refused(tmp_path, caplog):
    out = tmp_path / "out"
    assert main(["generate", str(out), *SMALL, "--seed", "1"]) == 0
    before = {name: path.read_bytes() for name, path in files_of(out).items()}
    message = refused(out, [*SMALL, "--seed", "2"], caplog)
    assert "generated with other options (seed differ)" in message
    assert {name: path.read_bytes() for name, path in files_of(out).items()} == before


def test_a_folder_another_run_is_starting_in_is_not_reclaimed(tmp_path, caplog):
    out = tmp_path / "out"
    leave_a_killed_run(out, [*SMALL, "--seed", "9"], tmp_path)
    manifest = (out / MANIFEST).read_text()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # as a running generate holds it, still before its first frame
        message = refused(out, [*SMALL, "--seed", "1"], caplog)
    finally:
        os.close(fd)
    assert "another cubepose generate is writing into" in message
    assert (out / MANIFEST).read_text() == manifest


def test_partial_files_of_a_run_still_writing_are_left_to_it(tmp_path):
    out = tmp_path / "out"
    assert main(["generate", str(out), *SMALL[2:], "--count", "4"]) == 0
    in_flight = next(out.glob("RGB*")) / ".rgb_6.png.q8w2e4.tmp"
    in_flight.write_bytes(b"being written")
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # as another run of the same options, rendering into the folder
        assert main(["generate", str(out), *SMALL[2:], "--count", "5"]) == 0  # resuming beside it is fine
        assert in_flight.exists()
    finally:
        os.close(fd)
    assert main(["generate", str(out), *SMALL[2:], "--count", "5"]) == 0  # alone now: the leftover goes
    assert not in_flight.exists()


def wait_for(condition, timeout: float = 60.0) -> None:
    """Poll ``condition`` every few milliseconds until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the generate subprocess never got there"
        time.sleep(0.005)


def test_a_killed_generate_neither_blocks_nor_pollutes_the_rerun(tmp_path, caplog):
    # Killed before its first frame: a FIFO as background blocks it for good once it has claimed the folder.
    backgrounds = tmp_path / "backgrounds"
    backgrounds.mkdir()
    os.mkfifo(backgrounds / "stuck.png")
    out = tmp_path / "out"
    args = ["--count", "300", "--image-size", "32", "--workers", "1", "--format", "solo", "--seed", "3"]
    stuck = subprocess.Popen(
        [str(BIN / "cubepose"), "generate", str(out), *args, "--backgrounds", str(backgrounds)],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (out / MANIFEST).exists())
        time.sleep(0.2)
    finally:
        stuck.send_signal(signal.SIGKILL)
        stuck.wait()
    assert not any(p.is_file() and p.name != MANIFEST for p in out.rglob("*"))

    # Killed after a few frames: the corrected command resumes it.
    rendering = subprocess.Popen([str(BIN / "cubepose"), "generate", str(out), *args], stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(list(out.glob("sequence.*/step0.frame_data.json"))) >= 3 or rendering.poll() is not None)
    finally:
        rendering.send_signal(signal.SIGKILL)
        rendering.wait()
    assert not (out / "metadata.json").exists(), "finished before it was killed; raise --count"
    (out / "sequence.299").mkdir(exist_ok=True)
    (out / "sequence.299" / ".step0.camera.png.a8f3k2.tmp").write_bytes(b"half an image")

    assert refused(out, [*args[:-1], "4"], caplog).startswith(f"{out} was generated with other options")
    assert main(["generate", str(out), *args]) == 0
    assert not list(out.rglob("*.tmp"))
    fresh = generate_dataset(
        tmp_path / "fresh", GenerationOptions(count=300, seed=3, image_size=32, format="solo", workers=1)
    )
    assert same_files(fresh, out)


def test_a_gcs_output_reclaims_and_clears_its_staging_folder(gcs_emulator, tmp_path):
    bucket = gcs_emulator.bucket()
    staging = default_cache_dir() / "generate" / "gcs" / bucket / "cube"
    leave_a_killed_run(staging, [*SMALL, "--seed", "9"], tmp_path)
    assert main(["generate", f"gs://{bucket}/cube", *SMALL, "--seed", "1"]) == 0
    assert not list(staging.rglob("*.tmp"))
    with gcs_emulator.client() as client:
        blobs = {blob.name: blob for blob in client.list_blobs(bucket)}
        assert not [name for name in blobs if name.endswith(".tmp")]
        assert json.loads(blobs[f"cube/{MANIFEST}"].download_as_bytes())["seed"] == 1
    assert sum(name.endswith(".png") for name in blobs) == 3


def test_an_unreadable_background_is_named_in_one_line(tmp_path, caplog):
    backgrounds = tmp_path / "backgrounds"
    backgrounds.mkdir()
    (backgrounds / "broken.png").write_bytes(b"not an image")
    args = ["--count", "2", "--image-size", "32", "--workers", "1", "--backgrounds", str(backgrounds)]
    message = refused(tmp_path / "out", args, caplog)
    assert f"cannot read {backgrounds / 'broken.png'}" in message and not (tmp_path / "out").exists()
