"""Ray–box intersection."""

from __future__ import annotations

import torch


def ray_aabb_intersect(
    origins: torch.Tensor,  # [R, 3]
    directions: torch.Tensor,  # [R, 3]
    aabb: torch.Tensor,  # [6]
    near_plane: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances ``near, far [R]`` of each ray in the box (slab method).

    ``near`` is at least ``near_plane``; rays that miss the box get ``near >= far``.
    """
    inv = 1.0 / torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    t0 = (aabb[:3] - origins) * inv
    t1 = (aabb[3:] - origins) * inv
    near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(near_plane)
    far = torch.maximum(t0, t1).amin(dim=-1)
    return near, far
