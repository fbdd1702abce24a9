"""Pose networks and the backbones they are built from."""

from cubepose.models.backbones import BACKBONES
from cubepose.models.pose_net import PoseNet, normalize_quaternions

__all__ = ["BACKBONES", "PoseNet", "normalize_quaternions"]
