"""Pose networks (``network/type``) and the backbones, heads and rotation representations they are built from
(each a registry), and the interface through which a network is exported (``ExportSpec``)."""

from cubepose.models.backbones import BACKBONES
from cubepose.models.export_spec import Exportable, ExportSpec
from cubepose.models.heads import HEADS
from cubepose.models.keypoint_net import KeypointNet
from cubepose.models.networks import NETWORKS, pose_network
from cubepose.models.pose_net import PoseNet
from cubepose.models.rotations import ROTATIONS, normalize_quaternions

__all__ = [
    "BACKBONES",
    "Exportable",
    "ExportSpec",
    "HEADS",
    "KeypointNet",
    "NETWORKS",
    "PoseNet",
    "ROTATIONS",
    "normalize_quaternions",
    "pose_network",
]
