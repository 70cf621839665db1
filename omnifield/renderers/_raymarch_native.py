"""Bridge from :func:`march_rays` to the native CPU kernel (``omnifield/native/raymarch.cpp``)."""

from __future__ import annotations

import torch

from omnifield.backend import native_kernels


def try_march_rays(
    origins: torch.Tensor,  # [R, 3] float32
    directions: torch.Tensor,  # [R, 3] float32, unit length
    near: torch.Tensor,  # [R]
    far: torch.Tensor,  # [R]
    occupancy: torch.Tensor,  # [G, G, G] bool
    aabb: torch.Tensor,  # [6]
    step_size: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:  # ([S] int64, [S], [S])
    """Native result, or ``None`` when the torch twin must run (no kernel, not CPU float32)."""
    tensors = (origins, directions, near, far)
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return None
    if occupancy.device.type != "cpu" or occupancy.dtype != torch.bool or occupancy.dim() != 3:
        return None
    kernels = native_kernels(origins, "raymarch")
    if kernels is None:
        return None
    ray_indices, t_starts, t_ends = kernels.march_rays(
        origins.detach(), directions.detach(), near.detach(), far.detach(), occupancy, aabb.detach().cpu(),
        float(step_size)
    )
    return ray_indices, t_starts, t_ends
