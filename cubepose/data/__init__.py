"""Reading Unity Perception datasets into edflow datasets.

The edflow dataset classes are imported on first use, so that the readers (and ``cubepose
generate``, which names shards the readers accept) load without edflow and chainer.
"""

from __future__ import annotations

import importlib

__all__ = ["PoseDataset", "TrainDataset", "ValidationDataset", "TestDataset"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("cubepose.data.datasets"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
