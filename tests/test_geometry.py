"""Quaternion and projection conventions against hand-computed values."""

from __future__ import annotations

import numpy as np

from cubepose.geometry import (
    canonicalize_quaternions,
    cube_corners,
    project_points,
    projection_from_fov,
    quaternion_to_matrix,
    transform_points,
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
    corners = transform_points(cube_corners(0.1), np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 0.0, 1.0]))
    assert corners.shape == (8, 3)
    np.testing.assert_allclose(corners.min(axis=0), [-0.05, -0.05, 0.95])
    np.testing.assert_allclose(corners.max(axis=0), [0.05, 0.05, 1.05])
