"""Ray marching with occupancy-grid skipping: packed samples of many rays.

Samples of ray ``r`` sit at ``t_k = near_r + k * dt`` (k = 0, 1, ... while ``t_k < far_r``); sample
``k`` covers ``[t_k, min(t_k + dt, far_r)]`` and is kept when the occupancy cell holding its midpoint
is occupied. Output is packed (flat, ordered by ray then ``t``), like nerfacc.

:func:`march_rays` uses the native CPU kernel when available, else :func:`_march_rays`, the
vectorised pure-torch twin (the reference in tests).
"""

from __future__ import annotations

import torch


def cell_index(points: torch.Tensor, aabb: torch.Tensor, resolution: int) -> torch.Tensor:
    """Flat occupancy-cell index ``[...]`` (x-major: ``ix*G*G + iy*G + iz``) of points ``[..., 3]``."""
    lo, hi = aabb[:3], aabb[3:]
    ijk = torch.floor((points - lo) / (hi - lo) * resolution).long().clamp(0, resolution - 1)
    return (ijk[..., 0] * resolution + ijk[..., 1]) * resolution + ijk[..., 2]


def _march_rays(
    origins: torch.Tensor,  # [R, 3]
    directions: torch.Tensor,  # [R, 3]
    near: torch.Tensor,  # [R]
    far: torch.Tensor,  # [R]
    occupancy: torch.Tensor,  # [G, G, G] bool
    aabb: torch.Tensor,  # [6]
    step_size: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure-torch ray marcher: ``(ray_indices [S] int64, t_starts [S], t_ends [S])``."""
    device = origins.device
    counts = torch.ceil((far - near) / step_size).clamp_min(0).long()
    counts = torch.where(far > near, counts, torch.zeros_like(counts))
    total = int(counts.sum())
    if total == 0:
        empty = torch.zeros(0, device=device)
        return torch.zeros(0, dtype=torch.long, device=device), empty, empty
    ray_ids = torch.repeat_interleave(torch.arange(origins.shape[0], device=device), counts)
    first = torch.cumsum(counts, 0) - counts
    k = torch.arange(total, device=device) - first[ray_ids]
    t_starts = near[ray_ids] + k.to(near.dtype) * step_size
    keep = t_starts < far[ray_ids]
    t_ends = torch.minimum(t_starts + step_size, far[ray_ids])
    mids = origins[ray_ids] + directions[ray_ids] * ((t_starts + t_ends) * 0.5)[:, None]
    keep &= occupancy.reshape(-1)[cell_index(mids, aabb, occupancy.shape[0])]
    return ray_ids[keep], t_starts[keep], t_ends[keep]


def march_rays(
    origins: torch.Tensor,
    directions: torch.Tensor,
    near: torch.Tensor,
    far: torch.Tensor,
    occupancy: torch.Tensor,
    aabb: torch.Tensor,
    step_size: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed samples in occupied cells (see module docstring); native kernel when available."""
    from omnifield.renderers import _raymarch_native

    out = _raymarch_native.try_march_rays(origins, directions, near, far, occupancy, aabb, step_size)
    if out is not None:
        return out
    return _march_rays(origins, directions, near, far, occupancy, aabb, step_size)
