"""`cubepose inspect`: the real console script in a subprocess on real exports."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from test_data import edit_captures

from conftest import BIN


def inspect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "cubepose"), "inspect", *map(str, args)], capture_output=True, text=True)


def test_json_reports_format_counts_skips_and_first_capture(tiny_data, tmp_path):
    root = shutil.copytree(tiny_data["validation"], tmp_path / "validation")
    first_values = {}

    def break_first_two(captures):
        captures[0]["annotations"][0]["values"] = []
        values = captures[1]["annotations"][0]["values"]
        values.append({**values[0], "instance_id": 2})
        first_values["second_instance_image"] = captures[1]["filename"]
        first_values.update(captures[2]["annotations"][0]["values"][0], image=captures[2]["filename"])

    edit_captures(root, break_first_two)
    result = inspect(root, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["format"] == "legacy" and summary["examples"] == 14
    assert summary["skipped"] == {
        "empty annotation": 1,
        "several instances (set data/instance_id or data/max_instances)": 1,
    }
    assert summary["first"]["image"] == str(root / first_values["image"])
    assert summary["first"]["translation"] == pytest.approx(first_values["translation"], rel=1e-6)
    assert [abs(v) for v in summary["first"]["quaternion"]] == pytest.approx(
        [abs(v) for v in first_values["rotation"]], rel=1e-5
    )
    assert summary["camera"]["image_size"] == [48, 48]
    assert "skipped 2 of 16 captures" in result.stderr  # reported once, on stderr, not in the JSON

    picked = json.loads(inspect(root, "--json", "--instance-id", "2").stdout)
    assert picked["examples"] == 1 and picked["first"]["image"] == str(root / first_values["second_instance_image"])
    assert picked["skipped"] == {"instance not present": 14, "empty annotation": 1}


def test_text_report_and_label_name(tiny_data):
    result = inspect(tiny_data["test"], "--label-name", "cube_position", "--fov", "50")
    assert result.returncode == 0, result.stderr
    assert "(legacy layout)" in result.stdout and "12 usable of 12 captures" in result.stdout
    assert "at 48x48" in result.stdout and "yaw_y" in result.stdout
    missing = inspect(tiny_data["test"], "--label-name", "Crate")
    assert missing.returncode == 2
    assert "12 label not present" in missing.stderr and "labels present: cube_position (12)" in missing.stderr


def test_legacy_camera_from_field_of_view_or_pixel_intrinsics(tiny_data, tmp_path):
    default = json.loads(inspect(tiny_data["test"], "--json").stdout)["camera"]
    assert default["intrinsics"] == pytest.approx([24 / np.tan(np.radians(30))] * 2 + [24, 24])  # 60 deg at 48 px
    given = json.loads(inspect(tiny_data["test"], "--json", "--intrinsics", "40", "41", "24", "23").stdout)
    assert given["camera"]["intrinsics"] == [40.0, 41.0, 24.0, 23.0]
    calibration = tmp_path / "camera_info.yaml"  # the same camera as ROS writes it: pixel centres 0.5 less
    calibration.write_text(json.dumps({"K": [40, 0, 23.5, 0, 41, 22.5, 0, 0, 1], "D": [0.0] * 5, "width": 48}))
    from_file = json.loads(inspect(tiny_data["test"], "--json", "--camera", str(calibration)).stdout)
    assert from_file["camera"] == given["camera"]
