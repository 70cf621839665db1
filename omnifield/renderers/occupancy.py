"""Occupancy grid for empty-space skipping (the semantics of nerfacc's ``OccGridEstimator``).

A ``G^3`` grid over the field's box keeps, per cell, an exponential moving
average of ``density * step_size`` evaluated at a random point in the cell.
Every ``update_every`` steps: during warm-up (the first ``warmup_steps``) all
cells are re-evaluated, later a random quarter of all cells plus as many
occupied ones (the random quarter is drawn from the cells inside the visual hull once the
grid is carved: carved cells can never be occupied). A cell is occupied when its value exceeds ``min(threshold, mean)`` and it has
not been carved away by :meth:`OccupancyGrid.carve_from_masks` (visual hull of
the training views' alpha masks, when the images have them).
Warm-up is 64 steps rather than nerfacc's 256: a full refresh of a 128^3 grid
is 2M density evaluations, which a CPU feels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from omnifield.config import register_config


@register_config("occupancy_grid")
@dataclass
class OccupancyGridConfig:
    """Grid resolution, update cadence and thresholds (nerfacc defaults)."""

    resolution: int = 128
    update_every: int = 16
    warmup_steps: int = 64
    ema_decay: float = 0.95
    threshold: float = 0.01


class OccupancyGrid(nn.Module):
    """``occupancy [G, G, G] bool`` and its EMA values ``values [G^3]``, both saved in checkpoints."""

    def __init__(self, aabb: torch.Tensor, cfg: OccupancyGridConfig | None = None):
        super().__init__()
        self.cfg = cfg or OccupancyGridConfig()
        g = self.cfg.resolution
        if g < 1:
            raise ValueError("occupancy grid resolution must be >= 1")
        self.register_buffer("aabb", aabb.clone().float())
        self.register_buffer("values", torch.zeros(g**3))
        self.register_buffer("occupancy", torch.ones(g, g, g, dtype=torch.bool))
        self.register_buffer("allowed", torch.ones(g, g, g, dtype=torch.bool))
        ijk = torch.stack(torch.meshgrid(*[torch.arange(g)] * 3, indexing="ij"), dim=-1).reshape(-1, 3)
        self.register_buffer("cell_ijk", ijk, persistent=False)

    def occupied_fraction(self) -> float:
        return float(self.occupancy.float().mean())

    def occupied_at(self, x: torch.Tensor) -> torch.Tensor:
        """Whether the cells holding points ``x [..., 3]`` are occupied ``[...]`` (False outside the box)."""
        g = self.cfg.resolution
        lo, hi = self.aabb[:3], self.aabb[3:]
        u = (x - lo) / (hi - lo)
        inside = ((u >= 0) & (u < 1)).all(dim=-1)
        ijk = (u * g).long().clamp(0, g - 1)
        return self.occupancy[ijk[..., 0], ijk[..., 1], ijk[..., 2]] & inside

    def _cell_points(self, cells: torch.Tensor) -> torch.Tensor:
        g = self.cfg.resolution
        u = (self.cell_ijk[cells].float() + torch.rand(cells.shape[0], 3, device=cells.device)) / g
        lo, hi = self.aabb[:3], self.aabb[3:]
        return lo + u * (hi - lo)

    @torch.no_grad()
    def update(self, step: int, density_fn: Callable[[torch.Tensor], torch.Tensor], step_size: float,
               chunk: int = 65536) -> bool:
        """Refresh the grid at ``step`` from ``density_fn(x [N, 3]) -> [N]``; returns whether it ran."""
        if step % self.cfg.update_every != 0:
            return False
        pool = self._candidate_cells()
        if step < self.cfg.warmup_steps:
            cells = pool
        else:
            rand = pool[torch.randint(0, pool.numel(), (pool.numel() // 4,), device=pool.device)]
            occupied = torch.nonzero(self.occupancy.reshape(-1)).squeeze(-1)
            cap = self.values.numel() // 4  # as nerfacc: up to a quarter of the whole grid
            if occupied.numel() > cap:
                occupied = occupied[torch.randint(0, occupied.numel(), (cap,), device=occupied.device)]
            cells = torch.cat([rand, occupied])
        points = self._cell_points(cells)
        fresh = torch.cat([density_fn(points[i:i + chunk]).reshape(-1) for i in range(0, points.shape[0], chunk)])
        fresh = fresh * step_size
        self.values[cells] = torch.maximum(self.values[cells] * self.cfg.ema_decay, fresh)
        threshold = min(self.cfg.threshold, float(self.values[pool].mean()))
        self.occupancy.copy_((self.values > threshold).reshape(self.occupancy.shape) & self.allowed)
        return True

    def _candidate_cells(self) -> torch.Tensor:
        """Flat indices of the cells the update evaluates: those inside the visual hull (all without one).

        Carved cells can never become occupied, so evaluating them would only cost time (on a masked
        object scene the hull keeps ~10 % of the grid, so updates are ~10x cheaper).
        """
        allowed = self.allowed.reshape(-1)
        if bool(allowed.all()):
            return torch.arange(allowed.numel(), device=allowed.device)
        return torch.nonzero(allowed).squeeze(-1)

    @torch.no_grad()
    def carve_from_masks(self, cameras, alphas: torch.Tensor, alpha_threshold: float = 0.01) -> float:
        """Visual hull: mark cells empty that project onto background in some view.

        cameras: :class:`Cameras` of the views; alphas: ``[N, H, W]`` in [0, 1]. A cell is carved
        when, in at least one view that sees its centre in front of the camera and inside the
        image, the alpha mask dilated by the cell's projected radius (plus one pixel) is below
        ``alpha_threshold`` there — a conservative test, so thin structures survive. Returns the
        fraction of cells kept. Views without transparent pixels carve nothing.
        """
        g = self.cfg.resolution
        lo, hi = self.aabb[:3], self.aabb[3:]
        centres = lo + (self.cell_ijk.float() + 0.5) / g * (hi - lo)  # [G^3, 3]
        half_diagonal = 0.5 * float(((hi - lo) / g).norm())
        keep = torch.ones(g**3, dtype=torch.bool, device=centres.device)
        for i in range(len(cameras)):
            mask = alphas[i]
            if bool((mask >= alpha_threshold).all()):
                continue
            idx = torch.nonzero(keep).squeeze(-1)  # only cells no earlier view has carved
            w2c = torch.linalg.inv(cameras.c2w[i].double()).float()
            p = centres[idx] @ w2c[:3, :3].T + w2c[:3, 3]
            depth = -p[:, 2]
            front = depth > 1e-3
            u = cameras.fx[i] * p[:, 0] / depth.clamp_min(1e-3) + cameras.cx[i]
            v = -cameras.fy[i] * p[:, 1] / depth.clamp_min(1e-3) + cameras.cy[i]
            inside = front & (u >= 0) & (v >= 0) & (u < cameras.width) & (v < cameras.height)
            if not bool(inside.any()):
                continue
            radius = int(torch.ceil(half_diagonal * cameras.fx[i] / depth[inside].min()).item()) + 1
            dilated = torch.nn.functional.max_pool2d(mask[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]
            seen = dilated[v[inside].long(), u[inside].long()]
            keep[idx[inside][seen < alpha_threshold]] = False
        self.allowed.copy_(keep.reshape(g, g, g))
        self.occupancy &= self.allowed
        return float(keep.float().mean())
