"""Seeded subsets and train/validation splits, identical on every run and every machine.

numpy's ``Generator`` (PCG64) is specified to give the same stream for the same seed on
every platform, so indices drawn from ``default_rng([seed, salt])`` never change.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

_SPLIT_SALT = {"train": 1, "validation": 2, "test": 3}
_FRACTION_SALT = 17


def sample_indices(count: int, sample_size: int | None, seed: int, split: str) -> np.ndarray:
    """Sorted indices of a seeded random subset (all when ``sample_size`` is None or too large)."""
    if sample_size is None or sample_size >= count:
        if sample_size is not None and sample_size > count:
            logger.warning(
                "data/%s/sample_size %d exceeds the %d usable captures; using all", split, sample_size, count
            )
        return np.arange(count)
    rng = np.random.default_rng([seed, _SPLIT_SALT.get(split, 0)])
    return np.sort(rng.choice(count, size=sample_size, replace=False))


def fraction_split(count: int, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Sorted ``train`` / ``validation`` indices holding out ``round(fraction * count)`` examples (at least 1)."""
    held_out = min(count - 1, max(1, round(fraction * count)))
    order = np.random.default_rng([seed, _FRACTION_SALT]).permutation(count)
    return {"train": np.sort(order[held_out:]), "validation": np.sort(order[:held_out])}
