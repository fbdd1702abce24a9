"""The `cubepose` commands given cameras no image can have, damaged metrics files and export paths that cannot be
written: one message naming the thing and the fix, exit status 2, no traceback (the real console script)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from serve_fixtures import untrained_checkpoint

from conftest import BIN


def cubepose(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "cubepose"), *map(str, args)], capture_output=True, text=True, timeout=120)


def refused(result: subprocess.CompletedProcess, *named: str) -> bool:
    """Whether the command stopped with exit status 2 and one message naming each of ``named``."""
    return result.returncode == 2 and all(n in result.stderr for n in named) and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--fov", "200"], "--fov must be a vertical field of view between 0 and 180 degrees, got 200"),
        (["--fov", "0"], "between 0 and 180 degrees, got 0"),
        (["--fov", "nan"], "between 0 and 180 degrees, got nan"),
        (["--intrinsics", "0", "0", "64", "64"], "the focal lengths fx, fy must be above 0 pixels"),
        (["--intrinsics", "1e308", "60", "64", "64"], "must be at most 1e+07 pixels"),
    ],
)
def test_inspect_refuses_a_camera_no_image_can_have(tiny_data, option, named):
    assert refused(cubepose("inspect", tiny_data["validation"], "--json", *option), named)


@pytest.fixture
def eval_folder(tmp_path) -> Path:
    folder = tmp_path / "eval" / "2026-12-06T10-00-00" / "12"
    folder.mkdir(parents=True)
    return folder


def test_metrics_shows_values_that_are_not_numbers_as_they_are(eval_folder):
    (eval_folder / "metrics.json").write_text(json.dumps({"add_cm": 1.5, "note": "retrained", "per_axis": [1, 2]}))
    result = cubepose("metrics", eval_folder)
    assert result.returncode == 0, result.stderr
    assert "add_cm    1.5" in result.stdout and '"retrained"' in result.stdout and "[1, 2]" in result.stdout


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ('{"add_cm": 1.5, "rotation', "cannot read"),
        ("[1.5, 2.5]", "is not a metrics file"),
        ("\udcff", "cannot read"),
    ],
)
def test_metrics_names_a_damaged_file_and_the_fix(eval_folder, content, named):
    path = eval_folder / "metrics.json"
    path.write_bytes(content.encode(errors="surrogateescape"))
    assert refused(cubepose("metrics", eval_folder), named, str(path), "evaluate again")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return untrained_checkpoint(tmp_path_factory.mktemp("export"))


def test_export_to_a_folder_or_below_a_file_is_refused_naming_the_path(checkpoint, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    result = cubepose("export", "--checkpoint", checkpoint, "--format", "onnx", folder)
    assert refused(result, f"the export's output {folder} is a folder", str(folder / "model.onnx"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cubepose("export", "--checkpoint", checkpoint, "--format", "torchscript", blocker / "model.pt")
    assert refused(result, f"cannot make the folder {blocker} of {blocker / 'model.pt'}", "give another path")
    assert blocker.read_text() == "not a folder" and list(folder.iterdir()) == []
