"""The benchmark scripts under eval/ run and print their table."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

from conftest import REPO


def run_script(name: str, *args: str) -> str:
    """Run eval/<name> from the repository root and return its standard output."""
    result = subprocess.run(
        [sys.executable, str(REPO / "eval" / name), *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_train_speed_prints_a_table_with_a_row_per_config():
    stdout = run_script("train_speed.py", "configs/cpu.yaml", "--steps", "1", "--repeats", "1")
    row = [line for line in stdout.splitlines() if line.startswith("| configs/cpu.yaml")]
    assert len(row) == 1 and "| small_cnn | 64 | 32 |" in row[0]
    assert float(row[0].split("|")[5]) > 0


def test_data_speed_prints_indexing_decoding_and_loading_tables():
    args = ["--captures", "300", "--repeats", "1", "--batches", "2", "--train-steps", "1", "--gpu-steps", "0"]
    args += ["--decode-images", "10", "--zoom-images", "8"]
    stdout = run_script("data_speed.py", *args)
    rows = {line.split("|")[1].strip(): line for line in stdout.splitlines() if line.startswith("| ")}
    assert "| 300 |" in rows["legacy"] and "| 300 |" in rows["solo"]  # every synthesised capture indexed
    assert float(rows["128 px (make demo)"].split("|")[3]) > 0
    assert sum(key.startswith("loading 128 -> 64 px, edflow batches, 2 processes") for key in rows) == 2
    assert "the target of 3x the CPU config's training throughput" in stdout
    for source in ("650x400 (ur3 preset)", "640x480"):  # the zoom-in recipe's sources, from the image cache
        assert float(rows[f"loading {source} -> 512 px, edflow batches, 2 processes, image cache"].split("|")[2]) > 0
    assert float(rows["training: configs/ur3_cpu.yaml (zoom-in, 512 px input)"].split("|")[2]) > 0


def test_generate_speed_prints_rows_per_layout_and_workers():
    args = ["--count", "40", "--repeats", "1", "--sizes", "32"]
    stdout = run_script("generate_speed.py", *args)
    rows = [line.split("|") for line in stdout.splitlines() if line.startswith("| 32 |")]
    workers = sorted({"1", str(os.cpu_count())})
    assert {(row[2].strip(), row[3].strip()) for row in rows} == {(f, w) for f in ("legacy", "solo") for w in workers}
    assert all(float(row[4]) > 0 for row in rows)
    assert "| OpenGL render, blur + noise, readback |" in stdout


def test_generate_speed_times_a_given_resolution_and_camera():
    args = ["--count", "8", "--repeats", "1", "--sizes", "--resolution", "48", "32", "--camera", "48", "32"]
    stdout = run_script("generate_speed.py", *args, "40", "44", "20", "18")
    rows = {line.split("|")[1].strip() for line in stdout.splitlines() if line.startswith("| 48x32")}
    assert rows == {"48x32", "48x32 (fx 40 fy 44 cx 20 cy 18)"}
    assert "| stage (one process, 48x32 px) | ms per image |" in stdout


def test_predict_speed_prints_latency_and_throughput_against_the_bare_forward():
    keypoints = "configs/cpu.yaml+configs/keypoints_cpu.yaml+network/image_size=64"
    stdout = run_script("predict_speed.py", "configs/cpu.yaml", keypoints, "--single", "5", "--batches", "2")
    rows = {line.split("|")[1].strip(): line.split("|") for line in stdout.splitlines() if line.startswith("| ")}
    assert {"bare forward", "array@64", "array@128", "png@128"} <= set(rows)
    assert float(rows["png@128"][2]) > 0 and rows["png@128"][4].strip().endswith("%")
    assert "| batch of 64 | images/s (median) |" in stdout
    assert f"{keypoints}: keypoints at 64 px" in stdout
    assert float(rows["configs/cpu.yaml"][2]) > 0 and float(rows[keypoints][2]) > 0  # the A/B table


def accuracy_rows() -> list[str]:
    """The built-in row names of eval/accuracy.py (a script, loaded by path)."""
    spec = importlib.util.spec_from_file_location("accuracy_script", REPO / "eval" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.ROWS)


def test_accuracy_trains_the_chosen_rows_for_the_budget_and_tabulates_the_metrics(tmp_path):
    args = ["--budget-minutes", "0.05", "--train-count", "64", "--test-count", "16", "--image-size", "48"]
    names = ["cubepose keypoints"]  # the other rows (Unity's VGG16, the regression) run the same code
    chosen = [name for name in accuracy_rows() if name.split(" (")[0] in names]
    stdout = run_script("accuracy.py", *args, "--rows", *chosen, "--data-dir", str(tmp_path))
    rows = [line.split("|") for line in stdout.splitlines() if line.startswith("| ") and "recipe |" not in line]
    assert [row[1].strip().split(" (")[0] for row in rows] == names
    assert all(int(row[2]) >= 20 and 0 <= float(row[8]) <= 1 for row in rows)  # steps; 5 cm 5 deg share
    assert all(0 <= float(v) <= 1 for row in rows for v in row[9].split(" / "))  # AR MSSD / AR MSPD
    worst = [[float(v) for v in row[10].split(" / ")] for row in rows]  # cm p99 / max: the worst cases
    assert all(p99 <= maximum for p99, maximum in worst) and all(int(row[11]) >= 0 for row in rows)  # withheld
    assert all(len(row[12].split(" / ")) == 2 for row in rows)  # the error on training images, beside
    assert (tmp_path / "yaw" / "train" / ".cubepose-generate.json").exists()


def test_accuracy_benchmarks_a_recipe_of_overlays_and_key_overrides(tmp_path):
    recipe = "configs/cpu.yaml+configs/accurate_cpu.yaml+network/rotation=quaternion+losses/pose/weight=2.5"
    args = ["--budget-minutes", "0.03", "--train-count", "64", "--test-count", "16", "--image-size", "48"]
    stdout = run_script("accuracy.py", *args, "--rotation", "full", "--recipe", recipe, "--data-dir", str(tmp_path))
    rows = [line.split("|") for line in stdout.splitlines() if line.startswith("| ") and "recipe |" not in line]
    assert [row[1].strip() for row in rows] == [recipe]
    assert stdout.startswith("full rotation;") and (tmp_path / "full" / "test" / ".cubepose-generate.json").exists()
    typo = ["--recipe", "configs/cpu.yaml+network/rotaton=6d", "--data-dir", str(tmp_path / "unused")]
    bad = subprocess.run(
        [sys.executable, str(REPO / "eval" / "accuracy.py"), *typo], cwd=REPO, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "did you mean 'network/rotation'" in bad.stderr
    assert not (tmp_path / "unused").exists()  # checked before generating any data


def test_accuracy_tests_a_row_with_cameras_it_was_not_trained_with(tmp_path):
    recipe = "configs/cpu.yaml+configs/keypoints_cpu.yaml+network/image_size=48"
    args = ["--budget-minutes", "0.03", "--train-count", "32", "--test-count", "8", "--image-size", "40", "56"]
    args += ["--fov", "50", "70", "--aspect", "1", "1.5", "--principal-jitter", "0.1", "--test-fov", "40"]
    args += ["--test-camera", "72", "48", "40", "40", "40", "22", "--test-style", "camera"]
    stdout = run_script("accuracy.py", *args, "--recipe", recipe, "--data-dir", str(tmp_path))
    rows = [line.split("|") for line in stdout.splitlines() if line.startswith("| ") and "recipe |" not in line]
    camera = "tested with a 72x48 camera (fx fy cx cy 40 40 40 22)"
    names = [recipe, f"{recipe}, tested at 40 deg FOV", f"{recipe}, {camera}", f"{recipe}, held-apart look: camera"]
    assert [row[1].strip() for row in rows] == names
    assert "40-56 px, vertical FOV 50-70 deg, aspect 1-1.5, principal point within 0.1" in stdout.splitlines()[0]
    folder = tmp_path / "yaw-fov-50-70-heights-40-56-aspect-1-1.5-jitter-0.1"
    recorded = {
        split: json.loads((folder / split / ".cubepose-generate.json").read_text())
        for split in ("train", "test", "test@40", "test@72x48-40-40-40-22", "test@style-camera")
    }
    assert "style" not in recorded["train"]["scene"] and recorded["test@style-camera"]["scene"]["style"] == "camera"
    # the held-apart set holds the test scenes (same seed and ranges), only their look differs
    assert {k: v for k, v in recorded["test@style-camera"]["scene"].items() if k != "style"} == recorded["test"][
        "scene"
    ]
    assert recorded["train"]["image_size"] == [40, 56] and recorded["train"]["scene"]["aspect"] == [1, 1.5]
    assert recorded["train"]["scene"]["vertical_fov_deg"] == [50, 70]
    assert recorded["test@40"]["scene"]["vertical_fov_deg"] == [40, 40] and recorded["test@40"]["image_size"] == 56
    assert recorded["test@72x48-40-40-40-22"]["scene"]["camera"] == {
        "width": 72,
        "height": 48,
        "fx": 40,
        "fy": 40,
        "cx": 40,
        "cy": 22,
    }


def test_accuracy_cross_checks_a_row_through_edflow_at_equal_steps_for_an_own_camera_and_object(tmp_path):
    args = ["--steps", "3", "--train-count", "64", "--test-count", "16", "--edflow"]
    args += ["--camera", "64", "48", "50", "50", "30", "24", "--object-dimensions", "0.05", "0.05", "0.05"]
    stdout = run_script("accuracy.py", *args, "--recipe", "configs/cpu.yaml", "--data-dir", str(tmp_path))
    rows = [line.split("|") for line in stdout.splitlines() if line.startswith("| ") and "recipe |" not in line]
    assert [row[1].strip() for row in rows] == ["configs/cpu.yaml", "configs/cpu.yaml through `edflow -t`"]
    assert [int(row[2]) for row in rows] == [3, 3] and "3 steps per row" in stdout
    assert all(0 <= float(row[8]) <= 1 for row in rows)
    assert "64x48 px of a 0.05x0.05x0.05 m object" in stdout.splitlines()[0]
    recorded = tmp_path / "yaw-camera-64x48x50x50x30x24-object-0.05x0.05x0.05" / "train" / ".cubepose-generate.json"
    scene = json.loads(recorded.read_text())["scene"]
    assert scene["camera"] == {"width": 64, "height": 48, "fx": 50, "fy": 50, "cx": 30, "cy": 24}
    assert scene["dimensions"] == [0.05, 0.05, 0.05]


def test_edflow_overhead_times_both_arms_and_prints_their_ratio(tmp_path):
    args = ["configs/cpu.yaml", "--short", "2", "--long", "4", "--repeats", "1", "--train-count", "160"]
    args += ["--test-count", "16", "--image-size", "48"]
    stdout = run_script("edflow_overhead.py", *args, "--data-dir", str(tmp_path))
    rows = {line.split("|")[1].strip(): line for line in stdout.splitlines() if line.startswith("| ")}
    assert {"edflow", "bare loop"} <= set(rows)
    assert "edflow / bare loop: " in stdout and "target below +10%" in stdout


def test_serve_load_answers_every_request_with_its_own_pose_at_each_concurrency_beside_abusive_clients():
    args = ["configs/cpu.yaml+network/image_size=32", "--requests", "24", "--concurrency", "1", "6", "--abusive", "2"]
    stdout = run_script(
        "serve_load.py", *args, "--image-size", "48", "40", "--pool", "8", "--max-batch", "3", "--baseline-batch", "4"
    )
    rows = {line.split("|")[1].strip(): line.split("|") for line in stdout.splitlines() if line.startswith("| ")}
    clients = ("1", "1 + 2 abusive", "6", "6 + 2 abusive")
    assert set(clients) <= set(rows) and "in-process `PosePredictor`, batches of 4" in rows
    assert [int(rows[c][6]) for c in clients] == [0] * 4  # none lost, answered twice or with another's pose
    assert all(float(rows[c][2]) > 0 and float(rows[c][4]) >= float(rows[c][3]) for c in clients)
    summaries = re.findall(r"abusive: p99 [\d.]+x the undisturbed run's .*; (\d+) attacks, (\d+) answered", stdout)
    assert len(summaries) == 2 and all(int(sent) >= 2 for sent, _ in summaries)  # the attacks ran beside them


def test_ddp_speed_times_one_and_two_ranks_and_their_all_reduce():
    args = ["configs/cpu.yaml+network/image_size=32+batch_size=4", "--ranks", "1", "2", "--steps", "2"]
    stdout = run_script("ddp_speed.py", *args, "--repeats", "1")
    rows = {line.split("|")[1].strip(): line.split("|") for line in stdout.splitlines() if line.startswith("| ")}
    assert {"1", "2"} <= set(rows) and float(rows["1"][2]) > 0 and float(rows["2"][2]) > 0
    assert float(rows["1"][4]) == 0 and float(rows["2"][4]) > 0  # one rank sends nothing; two average gradients
    assert rows["1"][6].strip() == "1.00x"


def test_video_measures_speed_jitter_tracking_and_the_lens_with_the_predictor(tmp_path):
    from serve_fixtures import solved_checkpoint

    checkpoint = solved_checkpoint(tmp_path, "zoom")
    args = ["--checkpoint", str(checkpoint), "--preset", "default", "--camera", "96", "64", "80", "80", "48", "32"]
    args += ["--sequences", "1", "--frames", "6", "--repeats", "1", "--distortion-images", "4"]
    stdout = run_script("video.py", *args, "--data-dir", str(tmp_path / "data"))
    for header in ("| mode | frames/s", "| mode | translation std mm", "| mode | translation cm", "| images, camera |"):
        assert header in stdout
    rates = [line for line in stdout.splitlines() if line.startswith("| --track, live")]
    assert len(rates) == 1 and float(rates[0].split("|")[2]) > 0
    assert (tmp_path / "data" / "static-0" / "lossless.mkv").exists()
