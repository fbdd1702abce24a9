"""Reading Unity Perception datasets into edflow datasets."""

from cubepose.data.datasets import PoseDataset, TestDataset, TrainDataset, ValidationDataset

__all__ = ["PoseDataset", "TrainDataset", "ValidationDataset", "TestDataset"]
