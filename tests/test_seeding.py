"""Seeded example order on edflow's real batch iterators (chainer MultiprocessIterator)."""

from __future__ import annotations

import numpy as np
from edflow.iterators.batches import make_batches

from cubepose.engine.batches import seed_shuffling


class Numbers:
    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int) -> dict:
        return {"i": i}


def epochs_of_indices(seed: int, epochs: int = 2) -> list[list[int]]:
    """The example order of ``epochs`` epochs of a shuffling edflow iterator seeded with ``seed``."""
    batches = make_batches(Numbers(), batch_size=6, shuffle=True, n_processes=1)
    try:
        np.random.seed(np.random.SeedSequence().entropy % 2**32)  # whatever the global state, the seed decides
        seed_shuffling(batches, seed)
        order = [int(i) for _ in range(4 * epochs) for i in next(batches)["i"]]
    finally:
        batches.finalize()
    return [order[k * 24 : (k + 1) * 24] for k in range(epochs)]


def test_the_seed_alone_decides_the_order_of_every_epoch():
    first = epochs_of_indices(7)
    assert epochs_of_indices(7) == first
    assert epochs_of_indices(8) != first
    assert first[0] != first[1] and sorted(first[0]) == sorted(first[1]) == list(range(24))
