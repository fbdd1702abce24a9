"""Symmetric objects keep their orientation: ``object/symmetries`` groups, losses and metrics modulo them,
config errors, and a plain cube trained and evaluated through the real edflow."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from edflow.data.believers.meta import MetaDataset
from test_edflow_e2e import CONFIGS, _eval_dirs, _ok, edflow

from cubepose.config import validate_config
from cubepose.errors import ConfigError
from cubepose.evaluation.metrics import add_distance, rotation_error, unity_dataset_metrics, unity_quaternion_error
from cubepose.geometry.object import Box
from cubepose.geometry.projection import transform_points
from cubepose.geometry.rotations import canonicalize_quaternions, quaternion_multiply, random_quaternions
from cubepose.geometry.symmetries import box_rotations, cube_rotations, symmetric_equivalents
from cubepose.inference.predictor import PosePredictor
from cubepose.losses import LOSSES, Criterion
from cubepose.models import PoseNet

ORIENTATION_LOSSES = ("mse", "l1", "smooth_l1", "sign_invariant", "geodesic")
S = float(np.sqrt(0.5))
HALF_TURN_X = [1.0, 0.0, 0.0, 0.0]
QUARTER_TURN_Z = [0.0, 0.0, S, S]
CUBE_COVERING_DEG = 62.8  # no rotation is farther than this from the nearest of a cube's 24 rotations


def assert_is_a_group(group: np.ndarray) -> None:
    """Distinct unit quaternions with w >= 0, the identity first, closed under composition."""
    np.testing.assert_allclose(np.linalg.norm(group, axis=1), 1.0, atol=1e-12)
    assert (group[:, 3] >= 0).all() and np.array_equal(group[0], [0, 0, 0, 1])
    same = np.abs(group @ group.T)
    assert (same[~np.eye(len(group), dtype=bool)] < 1 - 1e-9).all()  # no rotation twice (q and -q are one)
    products = quaternion_multiply(group[:, None, :], group[None, :, :]).reshape(-1, 4)
    assert np.allclose(np.abs(products @ group.T).max(axis=1), 1.0, atol=1e-12)  # each product is in the group


# --- the groups ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dimensions", "count"),
    [
        ((0.3, 0.2, 0.1), 4),
        ((0.3, 0.3, 0.1), 8),
        ((0.1, 0.3, 0.3), 8),
        ((0.3, 0.1, 0.3), 8),
        ((0.1, 0.1, 0.1), 24),
        ((0.1, 0.1, 0.10000001), 24),  # equal within the tolerance
    ],
)
def test_box_symmetries_follow_the_edge_lengths(dimensions, count):
    group = Box(dimensions, "box").symmetries
    assert len(group) == count
    assert_is_a_group(group)
    corners = Box(dimensions).corners()
    moved = transform_points(corners, np.zeros(3), group)  # (K, 8, 3): each symmetry maps corners onto corners
    assert np.allclose(np.abs(moved[:, :, None, :] - corners[None, None]).sum(-1).min(-1), 0, atol=1e-6)


def test_the_cube_has_24_rotations_and_none_has_the_identity_only():
    assert_is_a_group(cube_rotations())
    assert len(Box(symmetry="cube").symmetries) == 24
    np.testing.assert_array_equal(Box().symmetries, [[0, 0, 0, 1]])
    assert len(box_rotations((0.3, 0.2, 0.1))) == 4


def test_an_explicit_list_is_normalised_signed_and_gets_the_identity():
    group = Box(symmetry=[[0.0, 0.0, -1.0004, 0.0], [0.0, 0.0, 1.0, 0.0]]).symmetries  # one half turn, twice
    np.testing.assert_allclose(group, [[0, 0, 0, 1], [0, 0, -1, 0]])
    turns = Box(symmetry=[[0, 0, 0, -1], QUARTER_TURN_Z, [0, 0, 1, 0], [0, 0, S, -S]]).symmetries
    assert len(turns) == 4 and np.array_equal(turns[0], [0, 0, 0, 1])
    assert_is_a_group(turns)
    config = validate_config({"object": {"symmetries": [HALF_TURN_X]}})
    np.testing.assert_array_equal(Box.from_config(config).symmetries, [[0, 0, 0, 1], HALF_TURN_X])


@pytest.mark.parametrize(
    ("symmetries", "message"),
    [
        ("cubic", r"object/symmetries: 'cubic' is not none, cube, box or a list of quaternions"),
        ([[0.0, 0.0, 1.0, 1.0]], r"object/symmetries: item 0 \[0.0, 0.0, 1.0, 1.0\] has length 1.414, not 1"),
        ([[0.0, 0.0, 1.0]], r"object/symmetries: item 0 \[0.0, 0.0, 1.0\] is not 4 finite numbers"),
        ([HALF_TURN_X, [float("nan"), 0, 0, 1]], r"object/symmetries: item 1 .* is not 4 finite numbers"),
        ([], r"object/symmetries: expected none, cube, box or a list of unit quaternions"),
        (True, r"object/symmetries: expected none, cube, box"),
    ],
)
def test_config_refuses_symmetries_that_are_no_rotations(symmetries, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({"object": {"symmetries": symmetries}})
    with pytest.raises(ValueError, match=message):
        Box(symmetry=symmetries)


def test_the_retired_network_symmetric_key_names_its_replacement():
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'network/symmetric': it was removed; did you mean "
        r"'object/symmetries: cube'",
    ):
        validate_config({"network": {"symmetric": True}})


# --- losses and metrics modulo the group ----------------------------------------------------------------------


def turned_by_each_symmetry(group: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random true rotations, one per symmetry, and predictions equal to them turned by it: q * s_k (w >= 0)."""
    true = random_quaternions(np.random.default_rng(seed), len(group))
    return true, canonicalize_quaternions(quaternion_multiply(true, group))


def criterion_values(symmetries: str, losses: dict, true: np.ndarray, predicted: np.ndarray) -> dict:
    config = validate_config({"object": {"symmetries": symmetries}, "losses": losses})
    translation = torch.tensor([[0.0, 0.0, 0.5]]).expand(len(true), -1)
    predictions = {"translation": translation, "quaternion": torch.tensor(predicted, dtype=torch.float32)}
    targets = {"translation": translation, "quaternion": torch.tensor(true, dtype=torch.float32)}
    return Criterion.from_config(config)(predictions, targets)


@pytest.mark.parametrize("loss", ORIENTATION_LOSSES)
def test_a_prediction_turned_by_a_cube_symmetry_has_no_orientation_or_add_loss(loss):
    true, predicted = turned_by_each_symmetry(cube_rotations())
    losses = {"orientation": {"type": loss, "weight": 1.0}, "pose": {"type": "add", "weight": 1.0}}
    cube = criterion_values("cube", losses, true, predicted)
    zero = 2e-3 if loss == "geodesic" else 1e-6  # geodesic's clamp keeps acos' gradient finite: ~1e-3 rad at 0
    assert (cube["orientation"] < zero).all() and (cube["pose"] < 1e-6).all() and cube["orientation"].shape == (24,)
    plain = criterion_values("none", losses, true, predicted)
    assert plain["orientation"][0] < zero and (plain["orientation"][1:] > 0.1).all()  # all but the identity
    assert (plain["pose"][1:] > 0.01).all()


def test_a_box_forgives_its_own_half_turns_only():
    true = random_quaternions(np.random.default_rng(1), 2)
    predicted = canonicalize_quaternions(quaternion_multiply(true, [HALF_TURN_X, QUARTER_TURN_Z]))
    box = Box.from_config(validate_config({"object": {"dimensions": [0.3, 0.2, 0.1], "symmetries": "box"}}))
    criterion = Criterion({"orientation": {"type": "geodesic", "weight": 1.0}}, box=box)
    predictions = {"quaternion": torch.tensor(predicted, dtype=torch.float32)}
    values = criterion(predictions, {"quaternion": torch.tensor(true, dtype=torch.float32)})["orientation"]
    assert values[0] < 2e-3 and values[1] == pytest.approx(np.pi / 2, abs=1e-3)  # a quarter turn is no symmetry
    error = rotation_error(predicted, true, box.symmetries)
    np.testing.assert_allclose(np.degrees(error), [0, 90], atol=1e-6)


def test_the_symmetric_loss_has_a_finite_gradient_and_pulls_toward_the_nearest_equivalent():
    true = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    near_quarter_turn = torch.tensor([[0.0, 0.0, 0.70, 0.72]], requires_grad=True)  # about 88 deg about z
    values = Criterion({"orientation": {"type": "mse", "weight": 1.0}}, box=Box(symmetry="cube"))(
        {"quaternion": near_quarter_turn}, {"quaternion": true}
    )
    values["total"].sum().backward()
    assert values["orientation"].item() < 2e-4 and torch.isfinite(near_quarter_turn.grad).all()
    assert near_quarter_turn.grad[0, 2] < 0 < near_quarter_turn.grad[0, 3]  # toward (0, 0, S, S), not the identity


def test_metrics_measure_the_error_modulo_the_group():
    group = cube_rotations()
    true, predicted = turned_by_each_symmetry(group, seed=2)
    translation = np.tile([0.0, 0.0, 0.5], (len(group), 1))
    cube = Box(symmetry="cube")
    np.testing.assert_allclose(rotation_error(predicted, true, group), 0, atol=1e-6)
    np.testing.assert_array_equal(unity_quaternion_error(predicted, true, group), 0)  # Unity's 0.999 threshold
    np.testing.assert_allclose(add_distance(translation, predicted, translation, true, cube), 0, atol=1e-12)
    assert unity_dataset_metrics(translation, translation, predicted, true, group)["orientation_error"] == 0
    assert (np.degrees(rotation_error(predicted, true)[1:]) > 89).all()  # without the group: 90 deg or more
    assert (add_distance(translation, predicted, translation, true)[1:] > 0.01).all()
    anywhere = random_quaternions(np.random.default_rng(3), 2000)  # never farther than the group's covering radius
    assert np.degrees(rotation_error(anywhere, np.tile([0, 0, 0, 1.0], (2000, 1)), group)).max() <= CUBE_COVERING_DEG


def test_without_symmetries_every_number_is_the_old_one_bit_for_bit():
    rng = np.random.default_rng(4)
    p, q = random_quaternions(rng, 64), random_quaternions(rng, 64)
    t_p, t_q = rng.normal(size=(64, 3)), rng.normal(size=(64, 3))
    none = Box().symmetries
    unit_p, unit_q = canonicalize_quaternions(p), canonicalize_quaternions(q)  # the old formula's first step
    old = 2 * np.arccos(np.clip(np.abs(np.sum(unit_p * unit_q, -1)), 0, 1))
    np.testing.assert_array_equal(rotation_error(p, q, none), old)
    cos_angle = 2 * np.sum(p * q, axis=-1) ** 2 - 1  # Unity's formula, thresholds included
    unity = np.where(cos_angle <= -0.999, np.pi / 2, np.arccos(np.clip(cos_angle, -1.0, 1.0)))
    np.testing.assert_array_equal(unity_quaternion_error(p, q, none), np.where(cos_angle >= 0.999, 0.0, unity))
    corners = Box().corners()
    old_add = np.linalg.norm(transform_points(corners, t_q, q) - transform_points(corners, t_p, p), axis=-1).mean(-1)
    np.testing.assert_array_equal(add_distance(t_p, p, t_q, q, Box()), old_add)
    predictions = {"quaternion": torch.tensor(p, dtype=torch.float32)}
    targets = {"quaternion": torch.tensor(q, dtype=torch.float32)}
    for loss in ORIENTATION_LOSSES:
        losses = {"orientation": {"type": loss, "weight": 1.0}}
        value = Criterion(losses)(predictions, targets)["orientation"]
        assert torch.equal(value, LOSSES.get(loss).function(predictions["quaternion"], targets["quaternion"]))
    poses = {"translation": torch.tensor(t_p, dtype=torch.float32), **predictions}
    true_poses = {"translation": torch.tensor(t_q, dtype=torch.float32), **targets}
    value = Criterion({"pose": {"type": "add", "weight": 1.0}})(poses, true_poses)["pose"]
    expected = LOSSES.get("add").function(torch.cat(list(poses.values()), -1), torch.cat(list(true_poses.values()), -1))
    assert torch.equal(value, expected)


def test_symmetric_equivalents_compose_each_symmetry_first():
    q = np.array([QUARTER_TURN_Z])
    equivalents = symmetric_equivalents(q, np.array([[0, 0, 0, 1.0], HALF_TURN_X]))
    np.testing.assert_allclose(
        equivalents[0], canonicalize_quaternions(quaternion_multiply(q, [[0, 0, 0, 1], HALF_TURN_X]))
    )


def test_the_two_stage_crop_works_for_a_symmetric_object():
    config = {
        "network": {"backbone": "small_cnn", "image_size": 64, "crop": {"active": True, "size": 32, "locate_size": 32}},
        "losses": {"translation": {"type": "mse"}, "orientation": {"type": "geodesic"}, "window": {"type": "mse"}},
        "object": {"symmetries": "cube"},
    }
    outputs = PoseNet(validate_config(config)).eval()(torch.randn(2, 3, 64, 64))
    assert outputs["quaternion"].shape == (2, 4)


# --- through the real edflow -----------------------------------------------------------------------------------


def test_a_plain_cube_trains_and_evaluates_with_errors_modulo_its_symmetries(tiny_data, tmp_path):
    args = ["-n", "plain", "-b", *CONFIGS, "-t", "--num_steps", "3", "--object/symmetries", "cube"]
    _ok(edflow([*args, "--losses/orientation/type", "geodesic", "--losses/pose/type", "add"], tmp_path, tiny_data))
    (run,) = (tmp_path / "logs").glob("*_plain")
    (outputs,) = _eval_dirs(run)
    labels = MetaDataset(str(outputs)).labels
    group = Box(symmetry="cube").symmetries
    expected = np.degrees(rotation_error(labels["quaternion_pred"], labels["quaternion_true"], group))
    assert expected.max() <= CUBE_COVERING_DEG + 1e-3

    with open(outputs.parent / "errors.csv") as handle:
        rows = list(csv.DictReader(handle))
    np.testing.assert_allclose([float(r["rotation_error_deg"]) for r in rows], expected, rtol=1e-5, atol=1e-4)
    metrics = json.loads((outputs.parent / "metrics.json").read_text())
    assert metrics["rotation_error_deg_mean"] == pytest.approx(expected.mean(), rel=1e-5)
    assert metrics["orientation_error"] == pytest.approx(
        unity_quaternion_error(labels["quaternion_pred"], labels["quaternion_true"], group).mean(), rel=1e-5
    )
    assert {"add_cm_mean", "accuracy_5cm_5deg", "accuracy_add_10pct_diagonal"} <= set(metrics)
    assert "modulo the object's 24 symmetries" in (outputs.parent / "report.html").read_text()

    checkpoint = run / "train" / "checkpoints" / "model-3.ckpt"
    assert torch.load(checkpoint, weights_only=True)["config"]["object"]["symmetries"] == "cube"
    poses = PosePredictor.load(checkpoint).predict([rows[0]["image_path"]])
    assert poses["quaternion"].shape == (1, 4)  # a symmetric object keeps its orientation
