"""Reproducible training on the CPU: the same seed and config give the same losses.

The model's initial weights are seeded where each network is built (PoseNet, KeypointNet). What
remains random is the order of the examples, which cubepose.engine.batches seeds per batch iterator.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_global_generators(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (anything drawing from them)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
