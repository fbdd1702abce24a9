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
import torch.nn.functional as F

VOTE_RADIUS = 1  # cells around the peak whose offset votes are averaged (a 3 x 3 window)
CORNER_WINDOW = 2  # cells around where an instance's displacement puts a point, searched for its peak


class KeypointTargets(NamedTuple):
    """What a keypoint network is trained to predict for K points on a H x W grid."""

    heatmaps: torch.Tensor  # (B, K, H, W) a unit Gaussian at each point
    offsets: torch.Tensor  # (B, K, 2, H, W) u, v from each cell's centre to the point, in cells
    mask: torch.Tensor  # (B, K, H, W) 1 where the offsets are trained: cells within ``radius`` of the point
    names: torch.Tensor | None = None  # (B, G, H, W) assign_by_shape: 1 for each symmetry index the head may name


class KeypointMaps(NamedTuple):
    """What a keypoint network predicts on its grid, as the ``heatmap`` loss compares it with KeypointTargets."""

    heatmaps: torch.Tensor  # (B, K, H, W)
    offsets: torch.Tensor  # (B, K, 2, H, W)
    logits: torch.Tensor | None = None  # (B, G, H, W) assign_by_shape: the symmetry head's


class DisplacementTargets(NamedTuple):
    """What tells several instances apart, as the ``displacement`` loss compares it with the prediction."""

    displacements: torch.Tensor  # (B, 2 (K - 1), H, W) from each cell's centre to its instance's other points
    mask: torch.Tensor  # (B, H, W) 1 where they are trained: cells within ``radius`` of a centre


def _cell_grid(cells: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres in cell units: columns (1, W) and rows (H, 1)."""
    grid = torch.arange(cells, dtype=torch.float32, device=device) + 0.5
    return grid[None, :], grid[:, None]


def keypoint_targets(
    pixels: torch.Tensor, size: int, stride: int, sigma: float, radius: float, present: torch.Tensor | None = None
) -> KeypointTargets:
    """Targets for points ``pixels`` (B, K, 2), or (B, M, K, 2) of M instances of which ``present`` (B, M) count
    (u, v in input pixels of a ``size`` square image), on the ``size / stride`` grid: Gaussians of ``sigma``
    cells (several instances: the largest at each cell), offsets trained within ``radius`` cells, each to the
    point of the instance nearest that cell."""
    if pixels.dim() == 3:
        pixels = pixels[:, None]
    if present is None:
        present = torch.ones(pixels.shape[:2], dtype=torch.bool, device=pixels.device)
    cells = size // stride
    points = (pixels.float() / stride)[..., None, None, :]  # (B, M, K, 1, 1, 2) in cell units
    columns, rows = _cell_grid(cells, pixels.device)
    du = points[..., 0] - columns  # (B, M, K, 1, W)
    dv = points[..., 1] - rows  # (B, M, K, H, 1)
    slots = present[:, :, None, None, None]
    heatmaps, nearest = (torch.exp(-(du**2 + dv**2) / (2 * sigma**2)) * slots).max(dim=1)  # (B, K, H, W)
    offsets = torch.stack(torch.broadcast_tensors(du, dv), dim=3)  # (B, M, K, 2, H, W)
    offsets = offsets.gather(1, nearest[:, None, :, None].expand(-1, 1, -1, 2, -1, -1))[:, 0]
    mask = ((du.abs() <= radius) & (dv.abs() <= radius) & slots).any(dim=1).float()
    return KeypointTargets(heatmaps, offsets, mask)


def nearest_centres(
    pixels: torch.Tensor, present: torch.Tensor, size: int, stride: int, radius: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each cell, the slot (B, H, W) of the instance whose centre (keypoint 0 of ``pixels`` (B, M, K, 2),
    of which ``present`` (B, M) count) is nearest, and whether one lies within ``radius`` cells (B, H, W)."""
    cells = size // stride
    centres = pixels[:, :, 0].float() / stride  # (B, M, 2) in cells
    columns, rows = _cell_grid(cells, pixels.device)
    du = centres[..., 0, None, None] - columns  # (B, M, 1, W)
    dv = centres[..., 1, None, None] - rows  # (B, M, H, 1)
    distance = torch.where(present[..., None, None], du**2 + dv**2, torch.inf)  # (B, M, H, W)
    near = (du.abs() <= radius) & (dv.abs() <= radius) & present[..., None, None]
    return distance.argmin(dim=1), near.any(dim=1)


def displacement_targets(
    pixels: torch.Tensor, present: torch.Tensor, size: int, stride: int, radius: float
) -> DisplacementTargets:
    """What tells several instances apart: at the cells within ``radius`` of an instance's centre (keypoint 0),
    the displacements (B, 2 (K - 1), H, W) from each cell's centre to that instance's other K - 1 points, in
    cells (u, v per point), and the mask (B, H, W) of those cells (CenterNet's centre-to-joint offsets).

    ``pixels`` (B, M, K, 2) in input pixels, ``present`` (B, M) which instances count.
    """
    cells = size // stride
    nearest, near = nearest_centres(pixels, present, size, stride, radius)
    others = (pixels[:, :, 1:].float() / stride).flatten(2)  # (B, M, 2 (K - 1)) u, v per point, in cells
    chosen = others.gather(1, nearest.flatten(1)[..., None].expand(-1, -1, others.shape[-1]))  # (B, H W, 2 (K-1))
    chosen = chosen.transpose(1, 2).unflatten(2, (cells, cells))  # (B, 2 (K - 1), H, W)
    columns, rows = _cell_grid(cells, pixels.device)
    centres = torch.stack(torch.broadcast_tensors(columns, rows))  # (2, H, W): u, v of each cell's centre
    return DisplacementTargets(chosen - centres.repeat(others.shape[-1] // 2, 1, 1), near.float())


def _vote(heatmaps: torch.Tensor, offsets: torch.Tensor, index: torch.Tensor, stride: int) -> torch.Tensor:
    """Each keypoint at the peak cell ``index`` (N, K) of its heatmap (N, K, H, W): the offsets (N, K, 2, H, W)
    of the cells within ``VOTE_RADIUS`` of the peak each vote for a point, averaged with the cells' heatmap
    values as weights (the peak itself always counts). Pixels (N, K, 2) u, v in input pixels."""
    columns = heatmaps.shape[-1]
    peak_row, peak_column = (index // columns)[..., None, None], (index % columns)[..., None, None]
    column_centres, row_centres = _cell_grid(columns, heatmaps.device)
    column_index, row_index = column_centres - 0.5, row_centres - 0.5
    near = ((column_index - peak_column).abs() <= VOTE_RADIUS) & ((row_index - peak_row).abs() <= VOTE_RADIUS)
    at_peak = ((column_index == peak_column) & (row_index == peak_row)).float()
    weights = heatmaps.float().clamp_min(0) * near + 1e-6 * at_peak  # (N, K, H, W)
    total = weights.sum(dim=(-2, -1))
    u = (weights * (column_centres + offsets[:, :, 0].float())).sum(dim=(-2, -1)) / total
    v = (weights * (row_centres + offsets[:, :, 1].float())).sum(dim=(-2, -1)) / total
    return torch.stack([u, v], dim=-1) * stride


def decode_keypoints(heatmaps: torch.Tensor, offsets: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each keypoint's position: pixels (B, K, 2) u, v in input pixels, and its peak height (B, K), a score.

    The strongest cell of each heatmap, refined by its neighbours' offset votes (``_vote``). Only tensor
    operations: it traces into TorchScript and ONNX graphs.
    """
    scores, index = heatmaps.flatten(2).max(dim=-1)
    return _vote(heatmaps, offsets, index, stride), scores.float()


def _local_maxima(maps: torch.Tensor) -> torch.Tensor:
    """Where maps (B, 1, H, W) peak: no larger cell among the 8 neighbours, and of equal ones (a point on a cell
    edge lights two alike) only the first in raster order, so every bump is one peak."""
    padded = F.pad(maps, (1, 1, 1, 0), value=float("-inf"))  # left, right, top
    earlier = torch.maximum(
        torch.maximum(padded[..., :-1, :-2], padded[..., :-1, 1:-1]),  # up-left, up
        torch.maximum(padded[..., :-1, 2:], padded[..., 1:, :-2]),  # up-right, left
    )
    return (maps == F.max_pool2d(maps, 3, 1, 1)) & (maps > earlier)


def strongest_peaks(maps: torch.Tensor, count: int) -> torch.Tensor:
    """The cells (B, count) of the ``count`` strongest local maxima of ``maps`` (B, 1, H, W), strongest first
    (``_local_maxima``; the global maximum is the first). With fewer maxima the rest are the weakest cells."""
    peaks = torch.where(_local_maxima(maps), maps, torch.full_like(maps, float("-inf")))
    return peaks.flatten(1).topk(count, dim=1).indices


def decode_at(heatmaps: torch.Tensor, offsets: torch.Tensor, cells: torch.Tensor, stride: int) -> torch.Tensor:
    """The point (B, C, 2) in input pixels at each of the cells (B, C) of one heatmap (B, 1, H, W) and its offsets
    (B, 1, 2, H, W), refined by offset votes (``_vote``): several candidates of one keypoint."""
    count = cells.shape[1]
    repeated = heatmaps.repeat_interleave(count, dim=0), offsets.repeat_interleave(count, dim=0)
    return _vote(*repeated, cells.reshape(-1, 1), stride).reshape(-1, count, 2)


def decode_instances(
    heatmaps: torch.Tensor, offsets: torch.Tensor, displacements: torch.Tensor, stride: int, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``count`` instances per image: pixels (B, P, K, 2) and scores (B, P, K), strongest centre first.

    The P strongest local maxima of the centre heatmap (3 x 3 neighbourhood) are the instances; each one's
    other points are expected where its displacements (B, 2 (K - 1), H, W) point from its centre cell, and
    taken at the strongest cell of their heatmap within ``CORNER_WINDOW`` cells of there (weighed towards the
    expected place, so that a neighbour's corner close by is not taken instead). Every point is then
    refined by offset votes (``_vote``). Its score is its heatmap's height there, so a slot without an
    instance has a centre score near 0. Only tensor operations (traceable).
    """
    batch, keypoints, rows, columns = heatmaps.shape
    centre = heatmaps[:, :1]
    peaks = torch.where(_local_maxima(centre), centre, torch.zeros_like(centre))
    _, cell = peaks.flatten(1).topk(count, dim=1)  # (B, P)
    column_centres, row_centres = _cell_grid(columns, heatmaps.device)
    guesses = displacements.flatten(2).gather(2, cell[:, None].expand(-1, displacements.shape[1], -1))
    guesses = guesses.transpose(1, 2).unflatten(2, (keypoints - 1, 2))  # (B, P, K - 1, 2) in cells
    guess_u = guesses[..., 0] + (cell % columns)[..., None] + 0.5
    guess_v = guesses[..., 1] + (cell // columns)[..., None] + 0.5
    du, dv = column_centres - guess_u[..., None, None], row_centres - guess_v[..., None, None]  # (B, P, K - 1, ., .)
    window = (du.abs() <= CORNER_WINDOW) & (dv.abs() <= CORNER_WINDOW)  # (B, P, K - 1, H, W)
    nearness = torch.exp(-(du**2 + dv**2) / (2 * CORNER_WINDOW**2))  # of two peaks, the one nearer the guess
    others = (heatmaps[:, None, 1:].float().clamp_min(0) + 1e-6) * nearness * window  # an empty window: its centre
    corner_cells = others.flatten(3).argmax(dim=-1)  # (B, P, K - 1)
    index = torch.cat([cell[..., None], corner_cells], dim=-1).flatten(0, 1)  # (B P, K)
    repeated_heatmaps = heatmaps.repeat_interleave(count, dim=0)
    pixels = _vote(repeated_heatmaps, offsets.repeat_interleave(count, dim=0), index, stride)
    scores = repeated_heatmaps.flatten(2).gather(2, index[..., None])[..., 0].float()
    return pixels.unflatten(0, (batch, count)), scores.unflatten(0, (batch, count))
