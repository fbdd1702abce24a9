"""Keypoint heatmaps: Gaussian targets decode back to their points; with PnP they give back the pose."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cubepose.heatmaps import decode_heatmaps, gaussian_heatmaps
from cubepose.keypoints import object_keypoints, project_keypoints, solve_pnp
from cubepose.object_model import Box


@pytest.mark.parametrize(("stride", "sigma"), [(1, 2.0), (4, 1.5), (8, 1.0)])
def test_targets_decode_back_to_their_points_below_a_hundredth_of_a_pixel(stride, sigma):
    size = 128
    pixels = torch.from_numpy(np.random.default_rng(stride).uniform(2 * stride, size - 2 * stride, (6, 9, 2)))
    decoded, peaks = decode_heatmaps(gaussian_heatmaps(pixels, size, stride, sigma), stride)
    torch.testing.assert_close(decoded, pixels.float(), atol=0.01, rtol=0)
    assert peaks.shape == (6, 9) and (peaks > 0.75).all()


def test_a_peak_on_the_border_keeps_its_cell_centre_and_an_empty_map_a_low_confidence():
    pixels = torch.tensor([[[1.0, 60.0]]])  # u in the first 4 px cell
    decoded, peaks = decode_heatmaps(gaussian_heatmaps(pixels, 64, 4, 1.0), 4)
    assert decoded[0, 0, 0] == 2.0 and abs(float(decoded[0, 0, 1]) - 60.0) < 0.01
    _, empty = decode_heatmaps(torch.zeros(1, 1, 16, 16), 4)
    assert float(empty) == 0.0


def test_keypoints_through_stride_4_heatmaps_and_pnp_give_back_the_pose():
    box, size = Box((0.1, 0.1, 0.1)), 128
    translations = np.array([[0.02, -0.03, 0.45], [-0.05, 0.04, 0.6]])
    quaternions = np.array([[0.2, 0.3, -0.1, 0.927], [0.0, 0.7071, 0.0, 0.7071]])
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    cameras = np.tile([110.0, 110.0, 64.0, 64.0], (2, 1))
    pixels = torch.from_numpy(project_keypoints(box, translations, quaternions, cameras))
    decoded, _ = decode_heatmaps(gaussian_heatmaps(pixels, size, 4, 1.5), 4)
    translation, quaternion, error = solve_pnp(decoded, torch.tensor(object_keypoints(box)), torch.tensor(cameras))
    np.testing.assert_allclose(translation.numpy(), translations, atol=2e-4)
    assert (np.abs((quaternion.numpy() * quaternions).sum(axis=1)) > 1 - 1e-6).all() and error.max() < 0.02
