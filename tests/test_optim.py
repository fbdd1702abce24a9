"""Gradient accumulation: one optimizer step per N batches with the gradient of their mean loss."""

from __future__ import annotations

import torch

from cubepose.optim import GradientAccumulator


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
