"""Tile binning: which 16x16 screen tiles each projected Gaussian touches, sorted front to back.

A Gaussian with centre ``m`` covers the tiles ``[floor((m - e) / s), ceil((m + e) / s))`` on each axis
(clamped to the grid), where ``e`` is the half-extent of the box around its ellipse of alpha cut-off
(``sigma <= ln(255 o)``: ``e_x = sqrt(2 ln(255 o) S_xx)``, ``e_y = sqrt(2 ln(255 o) S_yy)``, ``S`` the
inverse of the conic), never more than its radius ``r``, gsplat's square. Pixels outside that box draw
nothing (alpha < 1/255), so the image is the same as with gsplat's square, but long thin Gaussians are
binned into a fraction of the tiles. The (tile, Gaussian) pairs are sorted by tile, then by depth (ties by
index), so each tile's list is the front-to-back order in which its pixels blend.
"""

from __future__ import annotations

import torch


def tile_grid(width: int, height: int, tile_size: int) -> tuple[int, int]:
    """Number of tiles ``(across, down)`` covering a ``width x height`` image."""
    return (width + tile_size - 1) // tile_size, (height + tile_size - 1) // tile_size


ALPHA_MIN = 1.0 / 255.0
CUT_SLACK = 1e-4  # added to the cut-off exponent, so rounding never drops a pixel that draws


def ellipse_extents(conics: torch.Tensor, opacities: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Half-extents ``[N, 2]`` (x, y) of the box around each Gaussian's ellipse of alpha cut-off, at most
    its radius; ``conics [N, 3]`` (a, b, c of ``0.5 (a dx^2 + c dy^2) + b dx dy``), ``opacities [N]``."""
    con = conics.detach()
    a, b, c = con.unbind(-1)
    det = a * c - b * b
    cut = torch.log(opacities.detach().clamp_min(1e-30) / ALPHA_MIN).clamp_min(0) + CUT_SLACK
    r = radii.to(con.dtype)[:, None]
    ok = ((det > 0) & (a > 0) & (c > 0))[:, None]
    extent = torch.sqrt(2 * cut[:, None] * torch.stack([c, a], -1) / torch.where(ok, det[:, None], 1.0))
    return torch.where(ok, torch.minimum(extent, r), r)


def tile_rects(
    means2d: torch.Tensor,  # [N, 2]
    extents: torch.Tensor,  # [N, 2] half-extents (x, y) in pixels
    radii: torch.Tensor,  # [N] int
    width: int,
    height: int,
    tile_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-open tile rectangles ``lo [N, 2]``, ``hi [N, 2]`` (int64); empty when ``radius == 0``."""
    tiles = torch.tensor(tile_grid(width, height, tile_size), device=means2d.device)
    m = means2d.detach()
    e = extents.to(m.dtype)
    lo = torch.floor((m - e) / tile_size).long().clamp(min=0)
    hi = torch.ceil((m + e) / tile_size).long().clamp(min=0)
    lo, hi = torch.minimum(lo, tiles), torch.minimum(hi, tiles)
    hi = torch.where((radii > 0)[:, None], hi, lo)
    return lo, hi


def intersect_tiles(
    means2d: torch.Tensor,  # [N, 2]
    conics: torch.Tensor,  # [N, 3]
    opacities: torch.Tensor,  # [N]
    radii: torch.Tensor,  # [N] int
    depths: torch.Tensor,  # [N]
    width: int,
    height: int,
    tile_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tile depth-sorted Gaussian lists.

    Returns ``tile_offsets [T + 1]`` (int64) and ``flatten_ids [M]`` (int64 Gaussian indices): tile ``t``
    (row-major, ``t = ty * tiles_across + tx``) blends ``flatten_ids[tile_offsets[t]:tile_offsets[t + 1]]``.
    """
    device = means2d.device
    tiles_x, tiles_y = tile_grid(width, height, tile_size)
    lo, hi = tile_rects(means2d, ellipse_extents(conics, opacities, radii), radii, width, height, tile_size)
    span = (hi - lo).clamp(min=0)
    counts = span[:, 0] * span[:, 1]
    gauss = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(len(gauss), device=device) - first[gauss]
    tx = lo[gauss, 0] + local % span[gauss, 0].clamp(min=1)
    ty = lo[gauss, 1] + local // span[gauss, 0].clamp(min=1)
    tile = ty * tiles_x + tx
    depth_rank = torch.empty_like(depths, dtype=torch.long)
    depth_rank[torch.argsort(depths.detach(), stable=True)] = torch.arange(len(depths), device=device)
    order = torch.argsort(tile * len(depths) + depth_rank[gauss])
    flatten_ids = gauss[order]
    per_tile = torch.bincount(tile, minlength=tiles_x * tiles_y)
    tile_offsets = torch.cat([per_tile.new_zeros(1), torch.cumsum(per_tile, 0)])
    return tile_offsets, flatten_ids
