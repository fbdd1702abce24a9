"""Losses and Unity's metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cubepose.config import validate_config
from cubepose.errors import ConfigError
from cubepose.evaluation.metrics import (
    add_distance,
    adds_distance,
    pose_dataset_metrics,
    rotation_error,
    translation_error,
    translation_squared_error,
    unity_dataset_metrics,
    unity_quaternion_error,
)
from cubepose.geometry.object import Box
from cubepose.geometry.projection import transform_points
from cubepose.geometry.rotations import quaternion_multiply
from cubepose.losses import Criterion
from cubepose.losses.functions import add, geodesic, l1, mse, sign_invariant
from cubepose.losses.weights import Ramp

S = np.sqrt(0.5)


def test_mse_and_l1_are_per_instance_means_over_components():
    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    true = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    torch.testing.assert_close(mse(pred, true), torch.tensor([13 / 3, 3.0]))
    torch.testing.assert_close(l1(pred, true), torch.tensor([5 / 3, 1.0]))


def test_criterion_total_is_the_weighted_sum_per_instance():
    losses = {"translation": {"type": "mse", "weight": 1.0}, "orientation": {"type": "l1", "weight": 2.5}}
    pred = {"translation": torch.zeros(2, 3), "quaternion": torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, 1.0]])}
    true = {"translation": torch.ones(2, 3), "quaternion": torch.tensor([[0, 0, 0, 1.0], [0, 0, 1.0, 0]])}
    values = Criterion(losses)(pred, true)
    torch.testing.assert_close(values["translation"], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(values["orientation"], torch.tensor([0.0, 0.5]))
    torch.testing.assert_close(values["total"], torch.tensor([1.0, 1.0 + 2.5 * 0.5]))


def test_a_criterion_without_losses_is_refused():
    with pytest.raises(ConfigError, match="no loss to optimise"):
        Criterion({})


UNIT = [0.0, 0.0, 0.0, 1.0]
QUARTER_TURN_Z = [0.0, 0.0, float(S), float(S)]  # 90 degrees about z


def test_sign_invariant_loss_is_zero_for_minus_q_and_the_mse_otherwise():
    q = torch.tensor([[0.1, 0.2, 0.3, 0.927]])
    assert sign_invariant(-q, q).item() == 0.0 and sign_invariant(q, q).item() == 0.0
    assert mse(-q, q).item() > 0.9  # Unity's MSE punishes the same rotation
    p, t = torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([UNIT])
    torch.testing.assert_close(sign_invariant(p, t), torch.tensor([0.5]))  # (1 + 1) / 4 either way


def test_geodesic_loss_is_the_angle_with_a_finite_gradient_at_zero():
    p = torch.tensor([QUARTER_TURN_Z, [-v for v in QUARTER_TURN_Z], UNIT], requires_grad=True)
    t = torch.tensor([UNIT, UNIT, UNIT])
    angles = geodesic(p, t)
    torch.testing.assert_close(angles[:2], torch.tensor([np.pi / 2, np.pi / 2]))
    assert angles[2].item() < 1e-3
    angles.sum().backward()
    assert torch.isfinite(p.grad).all()


def test_add_loss_of_a_shift_is_its_length_and_of_a_half_turn_the_corner_travel():
    true = torch.tensor([[0, 0, 1.0, *UNIT]])
    shifted = torch.tensor([[0.03, 0.04, 1.0, *UNIT]])
    torch.testing.assert_close(add(shifted, true), torch.tensor([0.05]))
    half_turn = torch.tensor([[0, 0, 1.0, 0, 0, 1.0, 0], [0, 0, 1.0, 0, 0, -1.0, 0]])  # q and -q
    expected = float(2 * np.hypot(0.05, 0.05))  # every corner goes to its opposite about z
    torch.testing.assert_close(
        add(half_turn, true.expand(2, -1)), torch.tensor([expected, expected]), rtol=1e-5, atol=0
    )


def test_a_ramped_weight_goes_linearly_between_its_steps():
    ramp = Ramp(start=0.1, end=1.0, start_step=100, end_step=1100)
    assert [ramp(s) for s in (0, 100, 600, 1100, 5000)] == pytest.approx([0.1, 0.1, 0.55, 1.0, 1.0])
    losses = {
        "translation": {"type": "mse", "weight": 1.0},
        "orientation": {"type": "geodesic", "weight": {"start": 0.0, "end": 2.0, "start_step": 0, "end_step": 10}},
        "pose": {"type": "add", "weight": 3.0},
    }
    criterion = Criterion(losses)
    pred = {"translation": torch.zeros(1, 3), "quaternion": torch.tensor([QUARTER_TURN_Z])}
    true = {"translation": torch.tensor([[0.0, 0.0, 0.0]]), "quaternion": torch.tensor([UNIT])}
    values = criterion(pred, true, step=5)
    assert criterion.weights(5) == {"translation": 1.0, "orientation": 1.0, "pose": 3.0}
    torch.testing.assert_close(values["total"], values["orientation"] + 3.0 * values["pose"])


def test_loss_types_must_fit_their_quantity_and_ramps_their_form():
    with pytest.raises(ConfigError, match=r"losses/translation/type: 'geodesic' does not apply to translation"):
        validate_config({"losses": {"translation": {"type": "geodesic"}}})
    with pytest.raises(ConfigError, match=r"losses/orientation/weight: a ramp takes exactly end, end_step, start"):
        validate_config({"losses": {"orientation": {"type": "mse", "weight": {"start": 0.1, "end": 1}}}})
    config = validate_config(
        {"losses": {"pose": {"type": "add", "weight": {"start": 0, "end": 1, "start_step": 0, "end_step": 9}}}}
    )
    assert config["losses"]["pose"]["weight"]["end_step"] == 9


def test_translation_squared_error():
    np.testing.assert_allclose(translation_squared_error([[0.1, 0.2, 0.3]], [[0.0, 0.0, 0.0]]), [0.14 / 3])


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [
        ([0, 0, 0, 1], 0.0),  # identical
        ([0, 0, 0, -1], 0.0),  # -q is the same rotation
        ([0, 0, np.sin(np.pi / 6), np.cos(np.pi / 6)], np.pi / 3),  # 60 deg about z
        ([0, S, 0, S], np.pi / 2),  # 90 deg
        ([0, 0, 1, 0], np.pi / 2),  # 180 deg: cos = -1 <= -0.999 -> Unity's pi/2
        ([0, 0, np.sin(0.01), np.cos(0.01)], 0.0),  # 1.15 deg: cos >= 0.999 -> Unity's 0
    ],
)
def test_unity_quaternion_error_reproduces_unitys_thresholds(predicted, expected):
    error = unity_quaternion_error(np.array([predicted], float), np.array([[0, 0, 0, 1.0]]))
    np.testing.assert_allclose(error, [expected], atol=1e-9)


def test_unity_dataset_metrics_average_over_instances():
    metrics = unity_dataset_metrics(
        np.array([[0.0, 0, 0], [0.3, 0, 0]]),
        np.zeros((2, 3)),
        np.array([[0, 0, 0, 1.0], [0, S, 0, S]]),
        np.array([[0, 0, 0, 1.0], [0, 0, 0, 1.0]]),
    )
    assert metrics == pytest.approx({"translation_mse": 0.015, "orientation_error": np.pi / 4})
    assert set(unity_dataset_metrics(np.zeros((1, 3)), np.zeros((1, 3)))) == {"translation_mse"}


# --- standard pose metrics, against hand-computed values ---------------------------------------

IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])
Z_180 = np.array([0.0, 0.0, 1.0, 0.0])


def test_translation_error_is_euclidean():
    np.testing.assert_allclose(translation_error([[0.03, 0.04, 1.0], [0, 0, 2]], [[0, 0, 1.0], [0, 0, 2]]), [0.05, 0])


def test_rotation_error_is_the_geodesic_angle_and_ignores_the_sign():
    half = np.radians(30) / 2
    about_x_30 = np.array([np.sin(half), 0, 0, np.cos(half)])
    errors = rotation_error(np.stack([about_x_30, -about_x_30, -IDENTITY]), np.stack([IDENTITY] * 3))
    np.testing.assert_allclose(np.degrees(errors), [30, 30, 0], atol=1e-6)
    assert np.degrees(rotation_error(Z_180, IDENTITY)) == pytest.approx(180)


def test_add_of_a_shift_is_its_length_and_of_a_half_turn_is_the_corner_travel():
    t = np.array([0.0, 0.0, 1.0])
    assert add_distance(t + [0.03, 0, 0.04], IDENTITY, t, IDENTITY) == pytest.approx(0.05)
    # 180 deg about z moves every corner (+-s/2, +-s/2, z) to (-x, -y, z): a distance of s * sqrt(2)
    assert add_distance(t, Z_180, t, IDENTITY) == pytest.approx(0.1 * np.sqrt(2))


def test_add_of_a_cube_with_its_symmetries_ignores_them():
    t = np.array([0.0, 0.0, 1.0])
    cube = Box(symmetry="cube")
    assert add_distance(t, Z_180, t, IDENTITY, cube) == pytest.approx(0.0, abs=1e-12)
    assert add_distance(t + [0.01, 0, 0], Z_180, t, IDENTITY, cube) == pytest.approx(0.01)


def test_pose_dataset_metrics_summaries_and_accuracies():
    # four instances: errors of 1, 3, 6 and 10 cm along x, and 1, 4, 1, 1 degrees about y
    shifts = np.array([0.01, 0.03, 0.06, 0.10])
    degrees = np.array([1.0, 4.0, 1.0, 1.0])
    true_t = np.tile([0.0, 0.0, 1.0], (4, 1))
    pred_t = true_t + np.column_stack([shifts, np.zeros(4), np.zeros(4)])
    half = np.radians(degrees) / 2
    pred_q = np.column_stack([np.zeros(4), np.sin(half), np.zeros(4), np.cos(half)])
    true_q = np.tile(IDENTITY, (4, 1))
    metrics = pose_dataset_metrics(pred_t, true_t, pred_q, true_q)
    assert metrics["translation_error_cm_mean"] == pytest.approx(5.0)
    assert metrics["translation_error_cm_median"] == pytest.approx(4.5)
    assert metrics["translation_error_cm_p90"] == pytest.approx(8.8)  # numpy's linear percentile: 6 + 0.7 * 4
    assert metrics["rotation_error_deg_mean"] == pytest.approx(1.75)
    assert metrics["accuracy_2cm_2deg"] == pytest.approx(0.25)  # only the first
    assert metrics["accuracy_5cm_5deg"] == pytest.approx(0.5)  # the first two
    # ADD < 10% of the diagonal (1.73 cm): only the 1 cm shift with its 1 deg turn qualifies
    assert metrics["accuracy_add_10pct_diagonal"] == pytest.approx(0.25)
    # the same predictions turned by a quarter turn about z first: the same numbers modulo the cube's rotations
    turned = quaternion_multiply(pred_q, [0.0, 0.0, S, S])
    symmetric = pose_dataset_metrics(pred_t, true_t, turned, true_q, box=Box(symmetry="cube"))
    assert symmetric == pytest.approx(metrics)
    assert pose_dataset_metrics(pred_t, true_t, turned, true_q)["rotation_error_deg_mean"] > 80


def test_adds_pairs_each_true_corner_with_the_closest_predicted_one_as_bop_toolkits_adi():
    box = Box((0.1, 0.1, 0.1))
    t = np.array([[0.0, 0.0, 1.0]] * 3)
    q = np.array([[0.0, 0.0, 0.0, 1.0]] * 3)
    quarter_turn = np.array([0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)])  # maps the cube's corners onto each other
    shift = np.array([0.01, 0.0, 0.0])
    predicted_t, predicted_q = t + [[0, 0, 0], shift, [0, 0, 0]], np.stack([quarter_turn, q[1], q[2]])
    adds = adds_distance(predicted_t, predicted_q, t, q, box)
    add = pose_dataset_metrics(predicted_t, t, predicted_q, q, box)
    np.testing.assert_allclose(adds, [0.0, 0.01, 0.0], atol=1e-12)  # the turn costs ADD-S nothing, ADD a lot
    assert add["add_cm_max"] > 5 and add["adds_cm_max"] == pytest.approx(1.0)
    assert add["accuracy_adds_10pct_diagonal"] == 1.0 and add["accuracy_add_10pct_diagonal"] == pytest.approx(2 / 3)

    rng = np.random.default_rng(0)  # against the definition, corner by corner, on random poses
    t_a, t_b = rng.normal(0, 0.05, (20, 3)) + [0, 0, 1], rng.normal(0, 0.05, (20, 3)) + [0, 0, 1]
    q_a, q_b = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in rng.normal(size=(2, 20, 4)))
    corners_a = transform_points(box.corners(), t_a, q_a)
    corners_b = transform_points(box.corners(), t_b, q_b)
    expected = [
        np.mean([min(np.linalg.norm(c - p) for p in pred) for c in true])
        for true, pred in zip(corners_b, corners_a, strict=True)
    ]
    np.testing.assert_allclose(adds_distance(t_a, q_a, t_b, q_b, box), expected, rtol=1e-12)
