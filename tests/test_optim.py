"""Gradient accumulation: one optimizer step per N batches with the gradient of their mean loss."""

from __future__ import annotations

import logging

import pytest
import torch

from cubepose.training.acceleration import accelerate
from cubepose.training.optim import GradientAccumulator, build_scheduler, lr_factor


def test_accumulation_steps_once_with_the_mean_gradient():
    torch.manual_seed(0)
    batches = [torch.randn(4, 3) for _ in range(3)]

    model = torch.nn.Linear(3, 1)
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    accumulator = GradientAccumulator(optimizer, steps=3)
    stepped = [accumulator.backward(model(x).pow(2).mean()) for x in batches]
    assert stepped == [False, False, True]

    reference = torch.nn.Linear(3, 1)
    with torch.no_grad():
        for p, s in zip(reference.parameters(), start, strict=True):
            p.copy_(s)
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    torch.stack([reference(x).pow(2).mean() for x in batches]).mean().backward()
    ref_optimizer.step()
    for p, r in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, r)
    assert all(p.grad is None for p in model.parameters())  # cleared after the step


def test_no_parameter_changes_before_the_last_accumulated_batch():
    model = torch.nn.Linear(2, 1)
    before = model.weight.detach().clone()
    accumulator = GradientAccumulator(torch.optim.SGD(model.parameters(), lr=1.0), steps=2)
    accumulator.backward(model(torch.ones(1, 2)).sum())
    torch.testing.assert_close(model.weight, before)


def test_clipping_limits_the_global_gradient_norm_and_records_it():
    weight = torch.nn.Parameter(torch.zeros(2))
    accumulator = GradientAccumulator(torch.optim.SGD([weight], lr=0.5), steps=1, clip_grad_norm=1.0)
    accumulator.backward((weight * torch.tensor([300.0, 400.0])).sum())  # gradient (300, 400), norm 500
    assert accumulator.last_grad_norm == pytest.approx(500.0)
    torch.testing.assert_close(weight.detach(), torch.tensor([-0.3, -0.4]))  # lr x the unit-norm gradient


def test_warmup_then_cosine_to_the_final_factor():
    factors = [lr_factor(step, "cosine", warmup_steps=4, total_steps=14, final_factor=0.1) for step in range(16)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[4] == pytest.approx(1.0) and factors[9] == pytest.approx(0.55)  # half way: the mean
    assert factors[14] == pytest.approx(0.1) and factors[15] == pytest.approx(0.1)
    assert [lr_factor(s, "constant", 2, 14, 0.1) for s in (0, 1, 2, 100)] == [0.5, 1.0, 1.0, 1.0]


def test_the_schedule_advances_once_per_optimizer_step():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    settings = {"schedule": "cosine", "warmup_steps": 0, "final_lr_factor": 0.0}
    scheduler = build_scheduler(optimizer, settings, total_steps=2)
    accumulator = GradientAccumulator(optimizer, steps=2, scheduler=scheduler)
    rates = []
    for _ in range(4):
        accumulator.backward(weight.sum())
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1.0, 0.5, 0.5, 0.0])


def test_cuda_features_are_ignored_on_the_cpu_with_a_warning(caplog):
    config = {"mixed_precision": True, "channels_last": True, "compile": False}
    with caplog.at_level(logging.WARNING):
        runner, settings = accelerate(torch.nn.Linear(2, 1), config, torch.device("cpu"))
    assert "mixed_precision, channels_last: CUDA only, ignored on cpu" in caplog.text
    assert not settings.mixed_precision and settings.scaler() is None and isinstance(runner, torch.nn.Linear)


def test_compile_wraps_the_model_and_leaves_its_state_dict_alone():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    runner, _ = accelerate(
        model, {"mixed_precision": False, "channels_last": False, "compile": True}, torch.device("cpu")
    )
    assert runner is not model
    x = torch.randn(5, 3)
    torch.testing.assert_close(runner(x), model(x))
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
