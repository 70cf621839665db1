"""Sparse depth supervision: rendered depth against the depths of structure-from-motion points."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_image(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear samples ``[M]`` of ``image [H, W]`` at pixel coordinates ``uv [M, 2]`` (x right, y down,
    ``0.5`` = centre of the first pixel; the border pixels extend outward)."""
    height, width = image.shape
    grid = torch.stack([2.0 * uv[:, 0] / width - 1.0, 2.0 * uv[:, 1] / height - 1.0], dim=-1)
    return F.grid_sample(image[None, None], grid[None, None].to(image.dtype), mode="bilinear",
                         padding_mode="border", align_corners=False).reshape(-1)


def sparse_depth_loss(depth: torch.Tensor, uv: torch.Tensor, target: torch.Tensor, scene_scale: float) -> torch.Tensor:
    """Mean L1 error in disparity between the rendered ``depth [H, W]`` (z-depth, 0 where nothing is drawn,
    disparity 0 there) and the points' depths ``target [M]`` at their pixels ``uv [M, 2]``, times ``scene_scale``
    so the loss has no units (gsplat's ``depth_loss``). Far errors weigh little, near ones (floaters) much.
    The disparity image is sampled (bilinear), so a sample beside an empty pixel stays bounded. 0 for no samples."""
    if len(target) == 0:
        return depth.sum() * 0.0
    disparity = torch.where(depth > 0, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
    return (sample_image(disparity, uv) - 1.0 / target).abs().mean() * scene_scale
