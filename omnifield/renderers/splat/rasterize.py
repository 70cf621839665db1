"""Front-to-back alpha blending of projected Gaussians, tile by tile.

For pixel centre ``p`` and the tile's Gaussians in depth order::

    sigma_i = 0.5 (a dx^2 + c dy^2) + b dx dy,      (dx, dy) = mean2d_i - p
    alpha_i = min(0.999, o_i exp(-sigma_i))          skipped when sigma_i < 0 or alpha_i < 1/255
    T_i     = prod_{j < i} (1 - alpha_j)             stop before the first i with T_i (1 - alpha_i) <= 1e-4
    C(p)    = sum_i c_i alpha_i T_i + T_final * background,   alpha(p) = 1 - T_final

:func:`rasterize_to_pixels` is the public op: the native C++/OpenMP kernel
(``omnifield/native/splat_raster.cpp``, forward and backward) for CPU float32,
else :func:`_rasterize_to_pixels`, the vectorised pure-torch twin (autograd does
its backward; it is the reference in tests and the float64 path).
"""

from __future__ import annotations

import torch

from omnifield.backend import native_kernels
from omnifield.renderers.splat.binning import ALPHA_MIN, intersect_tiles, tile_grid

ALPHA_MAX = 0.999
T_MIN = 1e-4


def rasterize_to_pixels(
    means2d: torch.Tensor,  # [N, 2]
    conics: torch.Tensor,  # [N, 3]
    colors: torch.Tensor,  # [N, C]
    opacities: torch.Tensor,  # [N]
    depths: torch.Tensor,  # [N]
    radii: torch.Tensor,  # [N] int
    width: int,
    height: int,
    tile_size: int = 16,
    background: torch.Tensor | None = None,  # [C]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend Gaussians into an image. Returns ``colors [H, W, C]`` and ``alphas [H, W]``; differentiable."""
    if background is None:
        background = colors.new_zeros(colors.shape[-1])
    lib = native_kernels(means2d, "splat_raster")
    if lib is None:
        return _rasterize_to_pixels(
            means2d, conics, colors, opacities, depths, radii, width, height, tile_size, background
        )
    return _NativeRasterize.apply(
        means2d, conics, colors, opacities, depths, radii, background, width, height, tile_size, lib
    )


class _NativeRasterize(torch.autograd.Function):
    """Autograd wrapper of the native forward/backward kernels."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, depths, radii, background, width, height, tile_size, lib):
        args = [t.detach().contiguous().float() for t in (means2d, conics, colors, opacities, depths)]
        radii = radii.to(torch.int32).contiguous()
        bg = background.detach().contiguous().float()
        image, final_t, last, offsets, ids = lib.forward(*args, radii, bg, width, height, tile_size)
        ctx.lib, ctx.tile_size = lib, tile_size
        ctx.save_for_backward(*args, bg, final_t, last, offsets, ids)
        return image, 1.0 - final_t

    @staticmethod
    def backward(ctx, v_image, v_alpha):
        means2d, conics, colors, opacities, depths, bg, final_t, last, offsets, ids = ctx.saved_tensors
        v_means2d, v_conics, v_colors, v_opacities = ctx.lib.backward(
            means2d, conics, colors, opacities, bg, final_t, last, offsets, ids,
            v_image.contiguous().float(), v_alpha.contiguous().float(), ctx.tile_size,
        )  # fmt: skip
        v_bg = (v_image * final_t[..., None]).sum(dim=(0, 1))
        return v_means2d, v_conics, v_colors, v_opacities, None, None, v_bg, None, None, None, None


def _rasterize_to_pixels(
    means2d: torch.Tensor,  # [N, 2]
    conics: torch.Tensor,  # [N, 3]
    colors: torch.Tensor,  # [N, C]
    opacities: torch.Tensor,  # [N]
    depths: torch.Tensor,  # [N]
    radii: torch.Tensor,  # [N] int
    width: int,
    height: int,
    tile_size: int,
    background: torch.Tensor,  # [C]
    max_elements: int = 1 << 22,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch twin of :func:`rasterize_to_pixels`: tiles padded to their longest list, in chunks."""
    tiles_x, tiles_y = tile_grid(width, height, tile_size)
    offsets, ids = intersect_tiles(means2d, conics, opacities, radii, depths, width, height, tile_size)
    counts = offsets[1:] - offsets[:-1]
    n_pix = tile_size * tile_size
    local = torch.arange(n_pix, device=means2d.device)
    out_rgb, out_t = [], []
    start = 0
    n_tiles = tiles_x * tiles_y
    while start < n_tiles:
        # as many tiles as fit the element budget (at least one)
        longest = torch.cummax(counts[start:], 0).values.clamp(min=1)
        fits = (torch.arange(1, n_tiles - start + 1, device=counts.device) * longest * n_pix) <= max_elements
        stop = start + max(int(fits.sum()), 1)
        rgb, trans = _blend_tiles(
            means2d, conics, colors, opacities, offsets, ids, torch.arange(start, stop, device=means2d.device),
            tiles_x, tile_size, local, background,
        )  # fmt: skip
        out_rgb.append(rgb)
        out_t.append(trans)
        start = stop
    rgb = torch.cat(out_rgb).reshape(tiles_y, tiles_x, tile_size, tile_size, -1)
    trans = torch.cat(out_t).reshape(tiles_y, tiles_x, tile_size, tile_size)
    rgb = rgb.permute(0, 2, 1, 3, 4).reshape(tiles_y * tile_size, tiles_x * tile_size, -1)[:height, :width]
    trans = trans.permute(0, 2, 1, 3).reshape(tiles_y * tile_size, tiles_x * tile_size)[:height, :width]
    return rgb, 1.0 - trans


def _blend_tiles(means2d, conics, colors, opacities, offsets, ids, tiles, tiles_x, tile_size, local, background):
    """Blend the pixels of ``tiles [B]``: ``rgb [B, P, C]`` and final transmittance ``[B, P]``."""
    counts = offsets[tiles + 1] - offsets[tiles]
    k = max(int(counts.max()), 1)
    slot = torch.arange(k, device=means2d.device)
    valid = slot[None, :] < counts[:, None]  # [B, K]
    gid = ids[(offsets[tiles][:, None] + slot[None, :]).clamp(max=max(len(ids) - 1, 0))] if len(ids) else None
    px = ((tiles % tiles_x) * tile_size)[:, None] + (local % tile_size)[None, :] + 0.5  # [B, P]
    py = ((tiles // tiles_x) * tile_size)[:, None] + (local // tile_size)[None, :] + 0.5
    if gid is None:
        shape = (len(tiles), len(local))
        return background.expand(*shape, -1), torch.ones(shape, dtype=means2d.dtype, device=means2d.device)
    mean = means2d[gid]  # [B, K, 2]
    con = conics[gid]
    dx = mean[:, None, :, 0] - px[:, :, None].to(mean.dtype)  # [B, P, K]
    dy = mean[:, None, :, 1] - py[:, :, None].to(mean.dtype)
    sigma = 0.5 * (con[:, None, :, 0] * dx * dx + con[:, None, :, 2] * dy * dy) + con[:, None, :, 1] * dx * dy
    alpha = (opacities[gid][:, None, :] * torch.exp(-sigma)).clamp(max=ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN) & valid[:, None, :], alpha, torch.zeros_like(alpha))
    with torch.no_grad():
        keep = torch.cumprod(1.0 - alpha, dim=-1) > T_MIN
    alpha = alpha * keep
    one_minus = 1.0 - alpha
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), one_minus], dim=-1), dim=-1)
    weights = alpha * trans[..., :-1]  # [B, P, K]
    rgb = torch.einsum("bpk,bkc->bpc", weights, colors[gid])
    final_t = trans[..., -1]
    return rgb + final_t[..., None] * background, final_t
