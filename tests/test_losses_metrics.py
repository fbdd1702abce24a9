"""Losses and Unity's metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cubepose.errors import ConfigError
from cubepose.losses import Criterion, l1, mse
from cubepose.metrics import translation_squared_error, unity_dataset_metrics, unity_quaternion_error

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


def test_symmetric_criterion_drops_orientation():
    losses = {"translation": {"type": "mse", "weight": 1.0}, "orientation": {"type": "mse", "weight": 1.0}}
    values = Criterion(losses, symmetric=True)({"translation": torch.zeros(1, 3)}, {"translation": torch.ones(1, 3)})
    assert set(values) == {"translation", "total"}
    with pytest.raises(ConfigError, match="no loss left"):
        Criterion({"orientation": {"type": "mse", "weight": 1.0}}, symmetric=True)


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
