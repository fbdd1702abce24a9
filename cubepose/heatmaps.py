"""Keypoint heatmaps and sub-cell offsets, batched: the training targets of a keypoint network and their decoding.

Cell (i, j) of a map at stride s covers input pixels [j s, (j + 1) s) x [i s, (i + 1) s); its centre is
((j + 0.5) s, (i + 0.5) s), the pixel convention of cubepose's cameras (cx = W / 2 is centred). A keypoint
is a Gaussian bump on its heatmap (where it is) plus, at the cells within ``radius`` of it, the offset from
each cell's centre to the point in cells (exactly where: CenterNet's offsets). Decoding takes the strongest
cell and averages the points its neighbours' offsets vote for, weighted by their heatmap values, so the
targets decode back to their points exactly and a network's decoding is sub-pixel.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

VOTE_RADIUS = 1  # cells around the peak whose offset votes are averaged (a 3 x 3 window)


class KeypointTargets(NamedTuple):
    """What a keypoint network is trained to predict for K points on a H x W grid."""

    heatmaps: torch.Tensor  # (B, K, H, W) a unit Gaussian at each point
    offsets: torch.Tensor  # (B, K, 2, H, W) u, v from each cell's centre to the point, in cells
    mask: torch.Tensor  # (B, K, H, W) 1 where the offsets are trained: cells within ``radius`` of the point


def _cell_grid(cells: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres in cell units: columns (1, W) and rows (H, 1)."""
    grid = torch.arange(cells, dtype=torch.float32, device=device) + 0.5
    return grid[None, :], grid[:, None]


def keypoint_targets(pixels: torch.Tensor, size: int, stride: int, sigma: float, radius: float) -> KeypointTargets:
    """Targets for points ``pixels`` (B, K, 2) (u, v in input pixels of a ``size`` square image) on the
    ``size / stride`` grid: Gaussians of ``sigma`` cells, offsets trained within ``radius`` cells."""
    cells = size // stride
    points = (pixels.float() / stride)[..., None, None, :]  # (B, K, 1, 1, 2) in cell units
    columns, rows = _cell_grid(cells, pixels.device)
    du = points[..., 0] - columns  # (B, K, 1, W)
    dv = points[..., 1] - rows  # (B, K, H, 1)
    heatmaps = torch.exp(-(du**2 + dv**2) / (2 * sigma**2))
    offsets = torch.stack(torch.broadcast_tensors(du, dv), dim=2)  # (B, K, 2, H, W)
    mask = ((du.abs() <= radius) & (dv.abs() <= radius)).float()
    return KeypointTargets(heatmaps, offsets, mask)


def decode_keypoints(heatmaps: torch.Tensor, offsets: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each keypoint's position: pixels (B, K, 2) u, v in input pixels, and its peak height (B, K), a score.

    The offsets of the cells within ``VOTE_RADIUS`` of the peak each vote for a point; the votes are averaged
    with the cells' heatmap values as weights (the peak itself always counts). Only tensor operations: it
    traces into TorchScript and ONNX graphs.
    """
    batch, keypoints, rows, columns = heatmaps.shape
    scores, index = heatmaps.reshape(batch, keypoints, -1).max(dim=-1)
    peak_row, peak_column = (index // columns)[..., None, None], (index % columns)[..., None, None]
    column_centres, row_centres = _cell_grid(columns, heatmaps.device)
    column_index, row_index = column_centres - 0.5, row_centres - 0.5
    near = ((column_index - peak_column).abs() <= VOTE_RADIUS) & ((row_index - peak_row).abs() <= VOTE_RADIUS)
    at_peak = ((column_index == peak_column) & (row_index == peak_row)).float()
    weights = heatmaps.float().clamp_min(0) * near + 1e-6 * at_peak  # (B, K, H, W)
    total = weights.sum(dim=(-2, -1))
    u = (weights * (column_centres + offsets[:, :, 0].float())).sum(dim=(-2, -1)) / total
    v = (weights * (row_centres + offsets[:, :, 1].float())).sum(dim=(-2, -1)) / total
    return torch.stack([u, v], dim=-1) * stride, scores.float()
