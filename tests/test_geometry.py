"""Quaternion and projection conventions against hand-computed values."""

from __future__ import annotations

import numpy as np
import torch

from cubepose.geometry.object import box_corners
from cubepose.geometry.projection import (
    intrinsics_from_fov,
    intrinsics_from_projection,
    pinhole_pixels,
    project_points,
    project_with_intrinsics,
    projection_from_fov,
    resize_intrinsics,
    transform_points,
)
from cubepose.geometry.rotations import (
    axis_angle_quaternions,
    canonicalize_quaternions,
    quaternion_multiply,
    quaternion_to_matrix,
    unity_euler_angles,
)

S = np.sqrt(0.5)


def test_quarter_turn_about_z_maps_x_to_y():
    rotation = quaternion_to_matrix(np.array([0.0, 0.0, S, S]))
    np.testing.assert_allclose(rotation @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


def test_matrices_are_batched_and_orthonormal():
    q = canonicalize_quaternions(np.random.default_rng(0).normal(size=(5, 4)))
    r = quaternion_to_matrix(q)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)


def test_canonical_sign_has_non_negative_w_and_unit_norm():
    q = canonicalize_quaternions(np.array([[0.0, 0.0, 0.0, -2.0], [1.0, 0.0, 0.0, 1.0]]))
    np.testing.assert_allclose(q, [[0, 0, 0, 1], [S, 0, 0, S]], atol=1e-12)


def test_projection_follows_unitys_camera_frame():
    m00, m11 = projection_from_fov(90.0, 200, 100)
    assert np.isclose(m11, 1.0) and np.isclose(m00, 0.5)
    # on the optical axis -> image centre; up (y > 0) -> smaller v; right (x > 0) -> larger u
    uv = project_points(np.array([[0.0, 0.0, 2.0], [0.0, 1.0, 2.0], [2.0, 0.0, 2.0]]), m00, m11, 200, 100)
    np.testing.assert_allclose(uv, [[100, 50], [100, 25], [150, 50]])


def test_cube_corners_under_a_pose():
    corners = transform_points(box_corners((0.1, 0.1, 0.1)), np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 0.0, 1.0]))
    assert corners.shape == (8, 3)
    np.testing.assert_allclose(corners.min(axis=0), [-0.05, -0.05, 0.95])
    np.testing.assert_allclose(corners.max(axis=0), [0.05, 0.05, 1.05])


def test_intrinsics_project_like_unity_projection_matrix():
    points = np.array([[0.1, -0.2, 1.5], [-0.3, 0.05, 0.8]])
    m00, m11 = projection_from_fov(50.0, 80, 60)
    expected = project_points(points, m00, m11, 80, 60)
    intrinsics = intrinsics_from_projection(m00, m11, 80, 60)
    np.testing.assert_allclose(project_with_intrinsics(points, intrinsics), expected)
    np.testing.assert_allclose(intrinsics_from_fov(50.0, 80, 60), intrinsics)
    # fy = H / (2 tan(fov / 2)); square pixels; centred
    np.testing.assert_allclose(intrinsics, [30 / np.tan(np.radians(25))] * 2 + [40, 30])


def test_tensors_project_like_unity_projection_matrix():
    """The projection the keypoint targets and the PnP solver use (torch) lands where Unity's matrix puts it."""
    points = np.array([[[0.1, -0.2, 1.5], [-0.3, 0.05, 0.8]], [[0.0, 0.0, 2.0], [0.2, 0.2, 0.5]]])
    m00, m11 = projection_from_fov(50.0, 80, 60)
    intrinsics = np.tile(intrinsics_from_projection(m00, m11, 80, 60), (2, 1))  # (2 images, 4)
    u, v = pinhole_pixels(torch.from_numpy(points), torch.from_numpy(intrinsics))
    assert isinstance(u, torch.Tensor)
    np.testing.assert_allclose(torch.stack([u, v], -1).numpy(), project_points(points, m00, m11, 80, 60))


def test_resized_intrinsics_project_onto_the_resized_pixels():
    points = np.array([[0.1, -0.2, 1.5], [-0.3, 0.05, 0.8]])
    intrinsics = intrinsics_from_fov(60.0, 640, 480)
    resized = resize_intrinsics(intrinsics, np.array([640, 480]), (32, 24))
    original = project_with_intrinsics(points, intrinsics)
    np.testing.assert_allclose(project_with_intrinsics(points, resized), original * [32 / 640, 24 / 480])
    # batched: one camera per example
    batch = resize_intrinsics(np.stack([intrinsics] * 3), np.array([[640, 480]] * 3), (64, 64))
    assert batch.shape == (3, 4)
    np.testing.assert_allclose(batch[1], intrinsics * [0.1, 64 / 480, 0.1, 64 / 480])


def test_unity_euler_angles_of_single_axis_rotations():
    half = np.radians(40) / 2
    about = {axis: np.array([*(np.sin(half) * np.eye(3)[axis]), np.cos(half)]) for axis in range(3)}
    np.testing.assert_allclose(unity_euler_angles(about[0]), [40, 0, 0], atol=1e-9)  # pitch about x
    np.testing.assert_allclose(unity_euler_angles(about[1]), [0, 40, 0], atol=1e-9)  # yaw about y (up)
    np.testing.assert_allclose(unity_euler_angles(about[2]), [0, 0, 40], atol=1e-9)  # roll about z
    np.testing.assert_allclose(unity_euler_angles(-about[1]), [0, 40, 0], atol=1e-9)  # q and -q agree


def test_quaternion_product_composes_rotations():
    a = axis_angle_quaternions(np.array([0.0, 0.0, 1.0]), np.pi / 2)
    b = axis_angle_quaternions(np.array([1.0, 0.0, 0.0]), np.pi / 2)
    np.testing.assert_allclose(a, [0, 0, S, S])
    composed = quaternion_to_matrix(quaternion_multiply(a, b))
    np.testing.assert_allclose(composed, quaternion_to_matrix(a) @ quaternion_to_matrix(b), atol=1e-12)
    # b maps y to z, then a leaves z: y -> z
    np.testing.assert_allclose(composed @ [0, 1, 0], [0, 0, 1], atol=1e-12)
