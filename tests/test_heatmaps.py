"""Keypoint heatmaps and offsets: targets decode back to their points; with PnP they give back the pose."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cubepose.geometry.object import Box
from cubepose.models.codecs.heatmaps import decode_keypoints, keypoint_targets
from cubepose.models.codecs.keypoints import object_keypoints, project_keypoints, solve_pnp


@pytest.mark.parametrize(("stride", "sigma"), [(1, 2.0), (4, 1.5), (8, 1.0)])
def test_targets_decode_back_to_their_points(stride, sigma):
    size = 128
    pixels = torch.from_numpy(np.random.default_rng(stride).uniform(0, size, (6, 9, 2)))
    targets = keypoint_targets(pixels, size, stride, sigma, radius=1.5)
    decoded, peaks = decode_keypoints(targets.heatmaps, targets.offsets, stride)
    torch.testing.assert_close(decoded, pixels.float(), atol=1e-3, rtol=0)
    assert peaks.shape == (6, 9) and (peaks > 0.75).all()


def test_offsets_are_trained_only_near_their_point_and_an_empty_map_scores_zero():
    targets = keypoint_targets(torch.tensor([[[10.0, 30.0]]]), 64, 4, 1.0, radius=1.5)
    rows, columns = torch.nonzero(targets.mask[0, 0], as_tuple=True)
    assert set(rows.tolist()) == {6, 7, 8} and set(columns.tolist()) == {1, 2, 3}  # point at cell (7.5, 2.5)
    _, empty = decode_keypoints(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 2, 16, 16), 4)
    assert float(empty) == 0.0


def test_votes_of_the_peaks_neighbours_are_weighed_by_their_heatmap():
    """A network's noisy offsets average out: the 3 x 3 votes around the peak, weighted."""
    pixels = torch.tensor([[[33.0, 21.0]]])
    targets = keypoint_targets(pixels, 64, 4, 1.0, radius=1.5)
    noisy = targets.offsets + 0.3 * torch.randn(targets.offsets.shape, generator=torch.Generator().manual_seed(0))
    decoded, _ = decode_keypoints(targets.heatmaps, noisy, 4)
    peak_only = targets.heatmaps * (targets.heatmaps == targets.heatmaps.max())
    single, _ = decode_keypoints(peak_only, noisy, 4)
    assert (decoded - pixels).norm() < (single - pixels).norm()


def test_keypoints_through_stride_4_targets_and_pnp_give_back_the_pose():
    box, size = Box((0.1, 0.1, 0.1)), 128
    translations = np.array([[0.02, -0.03, 0.45], [-0.05, 0.04, 0.6]])
    quaternions = np.array([[0.2, 0.3, -0.1, 0.927], [0.0, 0.7071, 0.0, 0.7071]])
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    cameras = np.tile([110.0, 110.0, 64.0, 64.0], (2, 1))
    pixels = torch.from_numpy(project_keypoints(box, translations, quaternions, cameras))
    targets = keypoint_targets(pixels, size, 4, 1.5, radius=1.5)
    decoded, _ = decode_keypoints(targets.heatmaps, targets.offsets, 4)
    translation, quaternion, error = solve_pnp(decoded, torch.tensor(object_keypoints(box)), torch.tensor(cameras))
    np.testing.assert_allclose(translation.numpy(), translations, atol=1e-5)
    assert (np.abs((quaternion.numpy() * quaternions).sum(axis=1)) > 1 - 1e-6).all() and error.max() < 1e-3
