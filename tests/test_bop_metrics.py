"""BOP's MSSD and MSPD and their recalls against hand-computed cases, the symmetric cube included, and the
results CSV as bop_toolkit reads it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cubepose.data.bop import cubepose_poses
from cubepose.evaluation.bop_metrics import bop_recalls, bop_recalls_of_several, pose_errors
from cubepose.evaluation.bop_results import HEADER, image_ids, write_bop_results
from cubepose.evaluation.evaluator import Evaluation, ImageGeometry
from cubepose.geometry.object import Box
from cubepose.geometry.rotations import axis_angle_quaternions

IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])
AHEAD = np.array([0.0, 0.0, 0.5])  # the cube half a metre in front of the camera, edges along the axes
CAMERA = np.array([100.0, 100.0, 64.0, 64.0])
DIE, PLAIN = Box(), Box(symmetry="cube")
QUARTER_TURN_Z = axis_angle_quaternions(np.array([0.0, 0.0, 1.0]), np.array(math.pi / 2))


def test_a_shift_moves_every_vertex_by_itself_and_the_nearest_corner_most_on_screen():
    errors = pose_errors(AHEAD + [0.01, 0, 0], IDENTITY, AHEAD, IDENTITY, CAMERA, DIE)
    assert errors["mssd"] == pytest.approx(0.01)
    assert errors["mspd"] == pytest.approx(100 * 0.01 / 0.45)  # fx * shift / depth of the near face


def test_a_quarter_turn_is_a_tenth_of_a_metre_for_a_die_and_nothing_for_a_plain_cube():
    die = pose_errors(AHEAD, QUARTER_TURN_Z, AHEAD, IDENTITY, CAMERA, DIE)
    assert die["mssd"] == pytest.approx(math.sqrt(2 * 0.05**2 * 2))  # |(x, y) - (-y, x)| at a corner: 0.1 m
    plain = pose_errors(AHEAD, QUARTER_TURN_Z, AHEAD, IDENTITY, CAMERA, PLAIN)
    assert plain["mssd"] == pytest.approx(0.0, abs=1e-12) and plain["mspd"] == pytest.approx(0.0, abs=1e-9)


def test_recalls_count_errors_below_each_threshold():
    # MSSD 1 cm is 0.058 of the 17.3 cm diameter: correct from 0.10 on (9 of 10 thresholds);
    # MSPD 2.22 px: at 640 px wide every threshold (5..50 px) holds it, at 128 px (1..10 px) 3..10 do
    errors = {"mssd": np.array([0.01, 0.01]), "mspd": np.array([100 * 0.01 / 0.45] * 2)}
    recalls = bop_recalls(errors, np.array([640, 128]), DIE)
    assert recalls["mssd_recall_0.05"] == 0 and recalls["mssd_recall_0.10"] == 1
    assert recalls["ar_mssd"] == pytest.approx(0.9)
    assert recalls["mspd_recall_5"] == 0.5 and recalls["mspd_recall_15"] == 1
    assert recalls["ar_mspd"] == pytest.approx((10 + 8) / 20)
    failed = bop_recalls({"mssd": np.array([np.nan]), "mspd": np.array([np.nan])}, np.array([640]), DIE)
    assert failed["ar_mssd"] == 0 and failed["ar_mspd"] == 0  # a non-finite estimate is missed


def test_several_instances_are_matched_as_bop_matches_them():
    """One image, two true cubes, three estimates: A (score .9) is 0.02 m from cube 0 and 0.01 m from cube 1,
    B (.8) 0.03 m from cube 0, C (.1) exact on cube 0 but beyond the top two (BOP keeps inst_count estimates).
    MSSD thresholds in m: 0.05 x 0.173 = 0.0087 ... Below 0.0087 nothing counts; from 0.017 A takes cube 1
    (its least error), then B needs < threshold for cube 0: from 0.035 on."""
    mssd = np.array([[[0.02, 0.01], [0.03, 0.5], [0.0, 0.5]]])  # (1 image, 3 estimates, 2 cubes)
    pairs = {"mssd": mssd, "mspd": np.zeros_like(mssd)}
    recalls = bop_recalls_of_several(
        pairs, np.ones((1, 3), bool), np.array([[0.9, 0.8, 0.1]]), np.ones((1, 2), bool), np.array([640]), DIE
    )
    shares = 0.01 / DIE.diameter, 0.03 / DIE.diameter  # A's error to cube 1, B's to cube 0, as diameter shares
    expected = [(t > shares[0]) / 2 + (t > shares[1]) / 2 for t in np.arange(1, 11) * 0.05]
    assert [recalls[f"mssd_recall_{t:.2f}"] for t in np.arange(1, 11) * 0.05] == pytest.approx(expected)
    assert recalls["mspd_recall_5"] == 1.0  # zero pixel error: A and B match both cubes; C is never needed


def test_evaluation_reports_bop_metrics_and_per_instance_errors():
    labels = {
        "translation_pred": np.array([AHEAD + [0.01, 0, 0], AHEAD]),
        "translation_true": np.array([AHEAD, AHEAD]),
        "quaternion_pred": np.array([IDENTITY, QUARTER_TURN_Z]),
        "quaternion_true": np.array([IDENTITY, IDENTITY]),
    }
    images = ImageGeometry(np.tile(CAMERA, (2, 1)), np.array([640, 640]))
    die, plain = Evaluation.of(labels, DIE, images), Evaluation.of(labels, PLAIN, images)
    np.testing.assert_allclose(die.errors["mssd_cm"], [1.0, 10.0])
    assert die.pose["ar_mssd"] == pytest.approx((9 + 0) / 20)  # the turned die errs 0.58 diameters: never correct
    assert plain.pose["ar_mssd"] == pytest.approx((9 + 10) / 20)


def test_results_csv_holds_bop_poses_that_read_back(tmp_path):
    translations = np.array([AHEAD, AHEAD + [0.1, -0.2, 0.3], [np.nan, 0, 1]])
    quaternions = np.array([IDENTITY, QUARTER_TURN_Z, IDENTITY])
    paths = np.array(["/d/test/000003/rgb/000017.png", "/d/test/000003/rgb/000018.png", "x.png"])
    ids = image_ids(paths, 3)
    np.testing.assert_array_equal(ids, [[3, 17], [3, 18], [0, 2]])
    path = write_bop_results(tmp_path, translations, quaternions, np.array([0.9, 0.5, 1.0]), np.arange(3), ids, 1)
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER and len(lines) == 3  # the non-finite estimate is left out
    scene, image, obj, score, rotation, translation, time = lines[2].split(",")
    assert (scene, image, obj, score, time) == ("3", "18", "1", "0.5", "-1")
    metres, back = cubepose_poses(
        np.array([float(v) for v in rotation.split()]).reshape(1, 3, 3),
        np.array([[float(v) for v in translation.split()]]),
    )
    np.testing.assert_allclose(metres[0], translations[1], atol=1e-9)
    assert abs(back[0] @ QUARTER_TURN_Z) == pytest.approx(1.0)
    np.testing.assert_allclose([float(v) for v in translation.split()], [100.0, 200.0, 800.0])  # mm, y down
