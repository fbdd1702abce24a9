"""edflow's batches, made reproducible: each shuffling iterator gets its own seeded order.

edflow's batches are chainer MultiprocessIterators that shuffle with numpy's global generator, from a
background thread once running, so two iterators (train, validation) would interleave their draws by
timing. Each iterator gets its own seeded sampler instead.
"""

from __future__ import annotations

import numpy as np
from chainer.iterators import MultiprocessIterator
from chainer.iterators.order_samplers import ShuffleOrderSampler


def seed_shuffling(batches: MultiprocessIterator, seed: int) -> None:
    """Give a shuffling batch iterator its own seeded order, before its first batch is drawn.

    Relies on chainer 7.8's iterator layout (``order_sampler`` on the iterator and its
    ``_prefetch_loop``); tests/test_edflow_e2e.py checks two runs give identical weights.
    """
    if batches.order_sampler is None:  # not shuffling (evaluation)
        return
    sampler = ShuffleOrderSampler(np.random.RandomState(seed % 2**32))
    batches.order_sampler = sampler
    batches._prefetch_loop.order_sampler = sampler
    batches.reset()
