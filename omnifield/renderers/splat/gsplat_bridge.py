"""CUDA path: gsplat's ``rasterization`` (imported lazily; gsplat has no CPU path)."""

from __future__ import annotations

import torch


def render_with_gsplat(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3]
    opacities: torch.Tensor,  # [N]
    colors: torch.Tensor,  # [N, C]
    viewmat: torch.Tensor,  # [4, 4] world-to-camera, OpenCV
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    background: torch.Tensor,  # [C]
    tile_size: int,
    near: float,
    eps2d: float,
) -> dict[str, torch.Tensor]:
    """Render one view with gsplat: ``rgb [H, W, C]``, ``alpha [H, W]``, ``means2d [1, N, 2]``, ``radii [N]``.

    ``means2d`` is gsplat's own tensor (with its camera axis), so that backward fills its gradient.
    """
    from gsplat import rasterization

    rgb, alpha, meta = rasterization(
        means, quats, scales, opacities, colors, viewmat[None], K[None], width, height,
        near_plane=near, eps2d=eps2d, tile_size=tile_size, backgrounds=background[None], packed=False,
    )  # fmt: skip
    radii = meta["radii"][0]
    if radii.dim() == 2:  # gsplat >= 1.5 returns per-axis radii
        radii = radii.max(dim=-1).values
    return {"rgb": rgb[0], "alpha": alpha[0, ..., 0], "means2d": meta["means2d"], "radii": radii.int()}
