"""The wireframe rasteriser behind the report galleries and the TensorBoard pose images."""

from __future__ import annotations

import numpy as np

from cubepose.evaluation.overlay import PREDICTED_COLOUR, TRUE_COLOUR, draw_cubes, pose_overlays

IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])
CAMERA = np.array([100.0, 100.0, 50.0, 50.0])  # fx, fy, cx, cy for a 100 x 100 image


def _drawn(canvas: np.ndarray, colour=TRUE_COLOUR) -> np.ndarray:
    return np.all(canvas == colour, axis=-1)


def _outline(low: int, high: int, size: int = 100) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    inside = (rows >= low) & (rows <= high) & (cols >= low) & (cols <= high)
    return inside & ((rows == low) | (rows == high) | (cols == low) | (cols == high))


def test_a_cube_facing_the_camera_draws_its_front_and_back_squares_exactly():
    # 10 cm cube 1 m ahead: the front face (z 0.95) spans 50 +- 5.26 px, the back (z 1.05) 50 +- 4.76 px;
    # the four depth edges run between their corners, (44, 44) to (45, 45) and so on.
    canvas = draw_cubes(np.zeros((1, 100, 100, 3), np.uint8), CAMERA[None], [[0, 0, 1.0]], IDENTITY[None], TRUE_COLOUR)
    np.testing.assert_array_equal(_drawn(canvas[0]), _outline(44, 55) | _outline(45, 54))


def test_edges_leaving_the_image_are_clipped_not_dropped():
    translation, quaternion = np.array([[0.2, 0.05, 0.4]]), np.array([[0.1, 0.3, 0.0, 0.95]])
    narrow = draw_cubes(np.zeros((1, 100, 100, 3), np.uint8), CAMERA[None], translation, quaternion, TRUE_COLOUR)
    wide = draw_cubes(np.zeros((1, 100, 300, 3), np.uint8), CAMERA[None], translation, quaternion, TRUE_COLOUR)
    assert _drawn(narrow[0])[:, 99].any() and _drawn(wide[0])[:, 100:].any()  # the cube crosses the right border
    np.testing.assert_array_equal(_drawn(narrow[0]), _drawn(wide[0])[:, :100])


def test_a_pose_behind_the_camera_draws_nothing_and_leaves_the_others_alone():
    canvas = draw_cubes(
        np.zeros((2, 100, 100, 3), np.uint8),
        np.stack([CAMERA, CAMERA]),
        [[0, 0, 0.02], [0, 0, 1.0]],  # the first cube straddles the camera plane
        np.stack([IDENTITY, IDENTITY]),
        TRUE_COLOUR,
    )
    assert not _drawn(canvas[0]).any()
    np.testing.assert_array_equal(_drawn(canvas[1]), _outline(44, 55) | _outline(45, 54))


def test_pose_overlays_enlarge_the_image_and_scale_the_camera_with_it():
    images = np.full((1, 100, 100, 3), 128, np.uint8)
    true = ([[0, 0, 1.0]], IDENTITY[None])
    shifted = ([[0.1, 0, 1.0]], IDENTITY[None])  # 10 cm right: 10 px at 100 px, 20 px at 200 px
    canvas = pose_overlays(images, CAMERA[None], true, shifted, scale=2)
    assert canvas.shape == (1, 200, 200, 3) and canvas.dtype == np.uint8
    green, red = _drawn(canvas[0], TRUE_COLOUR), _drawn(canvas[0], PREDICTED_COLOUR)
    green_cols, red_cols = np.nonzero(green.any(axis=0))[0], np.nonzero(red.any(axis=0))[0]
    assert green_cols.min() == 89  # floor(2 * (50 - 5.26)), lines 2 px wide at 200 px
    assert (red_cols.min(), red_cols.max()) == (109, 131)  # floor(2 * (60 +- 5.26)) (+1 for width); drawn over green
    assert np.all(canvas[0][~(green | red)] == 128)  # the image itself is untouched
