"""Rendered images of a Gaussian teacher: the targets of PVD's rendered-colour loss for splat scenes.

A Gaussian scene's own rendering is its rasterized image, not a volume rendering of its mixture
density (which aliases thin Gaussians at the sampler's step). Every distillation camera is rendered
once with a black background, kept as premultiplied colour and alpha in 8 bits (4 bytes per pixel),
and looked up at pixel centres; a ray's target on background ``bg`` is ``rgb + (1 - alpha) bg``.
"""

from __future__ import annotations

import torch

from omnifield.distill.active import RayBatch
from omnifield.renderers.cameras import Cameras
from omnifield.renderers.splat.renderer import SplatRenderer


class TeacherImages:
    """``rgba [V, H, W, 4]`` uint8 renders of ``scene`` (a ``GaussianScene``) from every camera of ``cameras``."""

    def __init__(self, scene, cameras: Cameras):
        renderer = SplatRenderer(background=(0.0, 0.0, 0.0))
        self.rgba = torch.empty(len(cameras), cameras.height, cameras.width, 4, dtype=torch.uint8)
        with torch.no_grad():
            for view in range(len(cameras)):
                out = renderer.render_camera(scene, cameras, view)
                rgba = torch.cat([out["rgb"], out["alpha"][..., None]], dim=-1).cpu()
                self.rgba[view] = (rgba.clamp(0, 1) * 255).round().to(torch.uint8)

    def lookup(self, rays: RayBatch, background: torch.Tensor) -> torch.Tensor:
        """Teacher colour ``[R, 3]`` of pixel-centre rays on ``background [R, 3]``."""
        h, w = self.rgba.shape[1:3]
        x = rays.px.long().clamp(0, w - 1)
        y = rays.py.long().clamp(0, h - 1)
        rgba = self.rgba[rays.views.cpu(), y.cpu(), x.cpu()].to(background.device, background.dtype) / 255.0
        return rgba[:, :3] + (1.0 - rgba[:, 3:]) * background
