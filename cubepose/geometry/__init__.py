"""Geometry of poses and cameras: self-contained, importing no other cubepose module.

Its modules: ``rotations`` (quaternions x, y, z, w, the canonical sign w >= 0), ``projection`` (pinhole
intrinsics, Unity's projection matrix), ``camera`` (the one Camera class), ``symmetries`` (the object's
rotation groups), ``object`` (the Box and its default size), ``rays`` and ``pnp`` (torch). The numpy
essentials are re-exported here; torch-based modules are imported by name.
"""

from cubepose.geometry.projection import (
    OPENCV_AXES,
    intrinsics_from_fov,
    intrinsics_from_projection,
    pinhole_pixels,
    project_points,
    project_with_intrinsics,
    projection_from_fov,
    projection_from_intrinsics,
    resize_intrinsics,
    transform_points,
    view_slopes,
)
from cubepose.geometry.rotations import (
    axis_angle_quaternions,
    canonical_sign,
    canonicalize_quaternions,
    quaternion_multiply,
    quaternion_to_matrix,
    random_quaternions,
    unity_euler_angles,
)

__all__ = [
    "OPENCV_AXES",
    "axis_angle_quaternions",
    "canonical_sign",
    "canonicalize_quaternions",
    "intrinsics_from_fov",
    "intrinsics_from_projection",
    "pinhole_pixels",
    "project_points",
    "project_with_intrinsics",
    "projection_from_fov",
    "projection_from_intrinsics",
    "quaternion_multiply",
    "quaternion_to_matrix",
    "random_quaternions",
    "resize_intrinsics",
    "transform_points",
    "unity_euler_angles",
    "view_slopes",
]
