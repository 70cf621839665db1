"""Spatial binning of 3-D Gaussians: which Gaussians can reach a query point.

Each Gaussian is entered into every cell of a uniform grid that its cut-off box overlaps; a query
point then only meets the Gaussians of its own cell. Gaussians whose box spans more than
``max_cells_per_gaussian`` cells (scene-sized floaters) are kept in a short list that meets every
point instead, so a few huge Gaussians cannot blow up the index. The cell edge is the median box
edge (bounded so the grid has at most ``max_resolution`` cells per axis).

Written here rather than taken from a library: scipy's KD-tree answers radius queries for spheres of
one radius, not per-Gaussian anisotropic boxes, and it runs on the CPU only.
"""

from __future__ import annotations

import torch


class GaussianBins:
    """Index of Gaussians by the cells their boxes ``means ± half_extents`` (``[N, 3]`` each) overlap."""

    def __init__(self, means: torch.Tensor, half_extents: torch.Tensor, max_resolution: int = 256,
                 max_cells_per_gaussian: int = 512):
        means, half = means.detach(), half_extents.detach()
        device = means.device
        n = len(means)
        if n == 0:
            self.lo = torch.zeros(3, device=device)
            self.cell = torch.ones((), device=device)
            self.res = torch.ones(3, dtype=torch.long, device=device)
            self.cell_start = torch.zeros(2, dtype=torch.long, device=device)
            self.entries = torch.zeros(0, dtype=torch.long, device=device)
            self.large = torch.zeros(0, dtype=torch.long, device=device)
            return
        self.lo = (means - half).min(0).values
        hi = (means + half).max(0).values
        edge = (2 * half).max(-1).values
        self.cell = torch.maximum(edge.median(), (hi - self.lo).max() / max_resolution).clamp_min(1e-12)
        self.res = torch.ceil((hi - self.lo) / self.cell).long().clamp(1, max_resolution)
        first = self._cell_coords(means - half)
        span = self._cell_coords(means + half) - first + 1  # [N, 3]
        cells_per = span.prod(-1)
        small = cells_per <= max_cells_per_gaussian
        self.large = torch.nonzero(~small).squeeze(-1)
        ids = torch.nonzero(small).squeeze(-1)
        counts = cells_per[ids]
        owner = torch.repeat_interleave(ids, counts)
        local = torch.arange(len(owner), device=device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        sy, sz = span[owner, 1], span[owner, 2]
        offset = torch.stack([local // (sy * sz), (local // sz) % sy, local % sz], dim=-1)
        cell_ids = self._flat(first[owner] + offset)
        order = torch.argsort(cell_ids)
        self.entries = owner[order]
        n_cells = int(self.res.prod())
        per_cell = torch.bincount(cell_ids, minlength=n_cells)
        self.cell_start = torch.cat([torch.zeros(1, dtype=torch.long, device=device), torch.cumsum(per_cell, 0)])

    def _cell_coords(self, x: torch.Tensor) -> torch.Tensor:  # [M, 3] -> [M, 3] long, clamped into the grid
        return torch.floor((x - self.lo) / self.cell).long().clamp(min=torch.zeros_like(self.res), max=self.res - 1)

    def _flat(self, ijk: torch.Tensor) -> torch.Tensor:
        return (ijk[:, 0] * self.res[1] + ijk[:, 1]) * self.res[2] + ijk[:, 2]

    def _point_cells(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First entry and entry count ``[M]`` of each point's cell (count 0 outside the grid)."""
        rel = torch.floor((points.detach() - self.lo) / self.cell)
        inside = ((rel >= 0) & (rel < self.res)).all(-1)
        cell = self._flat(rel.long().clamp(min=torch.zeros_like(self.res), max=self.res - 1))
        start = self.cell_start[cell]
        return start, torch.where(inside, self.cell_start[cell + 1] - start, torch.zeros_like(start))

    def pair_counts(self, points: torch.Tensor) -> torch.Tensor:
        """Number of candidate Gaussians ``[M]`` of each point ``points [M, 3]``."""
        return self._point_cells(points)[1] + len(self.large)

    def pairs(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate (point index, Gaussian index) pairs ``([P], [P])`` for ``points [M, 3]``."""
        start, count = self._point_cells(points)
        point = torch.repeat_interleave(torch.arange(len(points), device=points.device), count)
        first = torch.repeat_interleave(start - (torch.cumsum(count, 0) - count), count)
        gauss = self.entries[first + torch.arange(len(point), device=points.device)]
        if len(self.large):
            point = torch.cat([point, torch.arange(len(points), device=points.device).repeat_interleave(len(self.large))])
            gauss = torch.cat([gauss, self.large.repeat(len(points))])
        return point, gauss
