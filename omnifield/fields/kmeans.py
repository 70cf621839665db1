"""Weighted k-means (Lloyd) in torch, used to place NeuRBF's basis centres where the target varies most."""

from __future__ import annotations

import torch


def nearest_center(points: torch.Tensor, centers: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Index of the nearest centre of every point. ``points [P, D], centers [K, D] -> [P]`` (int64)."""
    return torch.cat([torch.cdist(p, centers).argmin(dim=1) for p in points.split(chunk)])


def weighted_kmeans(
    points: torch.Tensor,  # [P, D]
    weights: torch.Tensor,  # [P] >= 0
    k: int,
    n_iters: int = 10,
    generator: torch.Generator | None = None,
) -> torch.Tensor:  # [k, D]
    """Centres minimising ``sum_p w_p |x_p - c(p)|^2``: seeded by sampling points with probability ``~ w``,
    then ``n_iters`` Lloyd steps (assign to nearest, move to the weighted mean; empty clusters stay put)."""
    if points.dim() != 2 or weights.shape != points.shape[:1]:
        raise ValueError(f"weighted_kmeans needs points [P, D] and weights [P], got {tuple(points.shape)}, {tuple(weights.shape)}")
    if k < 1 or k > points.shape[0]:
        raise ValueError(f"k must be in 1..{points.shape[0]} (the number of points), got {k}")
    weights = weights.clamp_min(0.0)
    if not bool(weights.sum() > 0):
        weights = torch.ones_like(weights)
    seed = torch.multinomial(weights, k, replacement=False, generator=generator)
    centers = points[seed].clone()
    for _ in range(n_iters):
        assign = nearest_center(points, centers)
        mass = torch.zeros(k, dtype=points.dtype, device=points.device).index_add_(0, assign, weights)
        sums = torch.zeros_like(centers).index_add_(0, assign, weights[:, None] * points)
        moved = mass > 0
        centers[moved] = sums[moved] / mass[moved, None]
    return centers
