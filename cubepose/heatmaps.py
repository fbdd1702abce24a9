"""Keypoint heatmaps, batched: Gaussian targets on a grid of stride ``stride`` and their sub-pixel peaks.

Cell (i, j) of a heatmap covers input pixels [j s, (j + 1) s) x [i s, (i + 1) s) and its centre is
((j + 0.5) s, (i + 0.5) s), the pixel-centre convention of cubepose's cameras (cx = W / 2 is centred).
A peak is refined by a parabola through the logarithms of its neighbours, which is exact for a
Gaussian, so targets decode back to their points to a small fraction of a pixel.
"""

from __future__ import annotations

import torch

LOG_FLOOR = 1e-6  # heatmap values below this count as this, so that logarithms stay finite


def gaussian_heatmaps(pixels: torch.Tensor, size: int, stride: int, sigma: float) -> torch.Tensor:
    """(B, K, S, S) heatmaps with S = size / stride: a unit Gaussian of ``sigma`` cells at each point of
    ``pixels`` (B, K, 2) (u, v in input pixels of a ``size`` square image)."""
    cells = size // stride
    centres = (pixels.float() / stride - 0.5)[..., None, None, :]  # (B, K, 1, 1, 2) in cell units
    grid = torch.arange(cells, dtype=torch.float32, device=pixels.device)
    du = grid[None, :] - centres[..., 0]  # (B, K, 1, S) along u
    dv = grid[:, None] - centres[..., 1]  # (B, K, S, 1) along v
    return torch.exp(-(du**2 + dv**2) / (2 * sigma**2))


def decode_heatmaps(heatmaps: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each map's peak: pixels (B, K, 2) u, v in input pixels and the peak's height (B, K), a confidence.

    The strongest cell is refined per axis by the vertex of the parabola through the logarithms of it and
    its two neighbours; a peak on the border keeps the cell centre along that axis.
    """
    batch, keypoints, rows, columns = heatmaps.shape
    flat = heatmaps.reshape(batch, keypoints, -1)
    peaks, index = flat.max(dim=-1)
    row, column = index // columns, index % columns
    logs = heatmaps.clamp(min=LOG_FLOOR).log()

    def at(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return logs.reshape(batch, keypoints, -1).gather(-1, (r * columns + c)[..., None])[..., 0]

    def offset(before: torch.Tensor, centre: torch.Tensor, after: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        curvature = before - 2 * centre + after
        vertex = 0.5 * (before - after) / torch.where(curvature < 0, curvature, torch.full_like(curvature, -1.0))
        return torch.where(inside & (curvature < 0), vertex.clamp(-0.5, 0.5), torch.zeros_like(vertex))

    centre = at(row, column)
    inside_u = (column > 0) & (column < columns - 1)
    inside_v = (row > 0) & (row < rows - 1)
    left, right = at(row, (column - 1).clamp(min=0)), at(row, (column + 1).clamp(max=columns - 1))
    up, down = at((row - 1).clamp(min=0), column), at((row + 1).clamp(max=rows - 1), column)
    u = column + offset(left, centre, right, inside_u)
    v = row + offset(up, centre, down, inside_v)
    return (torch.stack([u, v], dim=-1).float() + 0.5) * stride, peaks
