"""``SplatRenderer``: a :class:`~omnifield.fields.gaussians.GaussianScene` seen by one camera -> image.

On CUDA with gsplat installed it calls gsplat's ``rasterization``; everywhere else it runs
our projection (:mod:`.projection`) and rasterizer (:mod:`.rasterize`: native kernel or torch twin).
Both return the same dict, including the screen-space means whose gradient drives densification.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from omnifield.backend import use_cuda_library
from omnifield.renderers.cameras import Cameras
from omnifield.renderers.splat.gsplat_bridge import render_with_gsplat
from omnifield.renderers.splat.projection import project_splats, viewmat_from_c2w_opengl
from omnifield.renderers.splat.rasterize import rasterize_to_pixels


@dataclass
class SplatRenderer:
    """Render Gaussian scenes. ``background`` is the colour behind everything (white for Blender scenes)."""

    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    tile_size: int = 16
    near: float = 0.01
    eps2d: float = 0.3

    def render(self, scene, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
               depth: bool = False) -> dict:
        """One view: ``viewmat [4, 4]`` (OpenCV world-to-camera), ``K [3, 3]``.

        Returns ``rgb [H, W, 3]``, ``alpha [H, W]``, ``means2d [N, 2]`` (``[1, N, 2]`` from gsplat; it retains
        its grad) and ``radii [N]``; with ``depth``, also ``depth [H, W]``: the expected z-depth of what is drawn
        (``sum w_i z_i / alpha``, gsplat's "ED"; 0 where nothing is), differentiable in the means.
        """
        means = scene.means
        origin = -viewmat[:3, :3].T @ viewmat[:3, 3]
        scales, quats, opacities = scene.scales(), scene.rotations(), scene.opacities()
        bg = _background(self.background, means.device, means.dtype)
        if depth:  # the z-depth rides along as one more colour channel, blended over a background of 0
            bg = torch.cat([bg, bg.new_zeros(1)])
        if use_cuda_library(means, "gsplat"):
            colors = scene.colors(origin)
            if depth:
                colors = torch.cat([colors, (means @ viewmat[2, :3] + viewmat[2, 3])[:, None]], dim=-1)
            out = render_with_gsplat(
                means, quats, scales, opacities, colors, viewmat, K, width, height, bg,
                self.tile_size, self.near, self.eps2d,
            )  # fmt: skip
        else:
            means2d, conics, depths, radii = project_splats(
                means, scales, quats, viewmat, K, width, height, near=self.near, eps2d=self.eps2d, opacities=opacities
            )
            colors = scene.colors(origin, visible=radii > 0)  # only what this view draws
            if depth:
                colors = torch.cat([colors, depths[:, None]], dim=-1)
            rgb, alpha = rasterize_to_pixels(
                means2d, conics, colors, opacities, depths, radii, width, height, self.tile_size, bg
            )
            out = {"rgb": rgb, "alpha": alpha, "means2d": means2d, "radii": radii}
        if depth:
            out["depth"] = out["rgb"][..., 3] / out["alpha"].clamp_min(1e-6)
            out["rgb"] = out["rgb"][..., :3]
        if out["means2d"].requires_grad:
            out["means2d"].retain_grad()
        return out

    def render_camera(self, scene, cameras: Cameras, index: int, depth: bool = False) -> dict:
        """Render view ``index`` of ``cameras`` (OpenGL camera-to-world, as loaded from Blender/COLMAP); ``depth``
        as in :meth:`render`.

        Cameras kept on the scene's device render without copies between host and device.
        """
        device = scene.means.device
        viewmat = viewmat_from_c2w_opengl(cameras.c2w[index].to(device))
        fx, fy, cx, cy = (t[index].to(device) for t in (cameras.fx, cameras.fy, cameras.cx, cameras.cy))
        zero, one = torch.zeros_like(fx), torch.ones_like(fx)
        K = torch.stack([fx, zero, cx, zero, fy, cy, zero, zero, one]).reshape(3, 3)
        return self.render(scene, viewmat, K, cameras.width, cameras.height, depth)


@lru_cache(maxsize=16)
def _background(values: tuple[float, float, float], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The background colour ``[3]`` on ``device``, made once (not copied to the GPU at every view)."""
    return torch.tensor(values, dtype=dtype, device=device)
