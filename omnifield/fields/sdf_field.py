"""SDFField: signed distance ``x [..., 3] -> s [...]`` inside a box (negative inside the surface)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from omnifield.config import register_config
from omnifield.fields.box import box_of_aabb
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLPConfig


@register_config("sdf_field")
@dataclass
class SDFFieldConfig:
    """Encoding config (3-D), decoder config (``build(n_in, 1)``, ``forward(h, u)``) and the world box."""

    encoding: Any = field(default_factory=HashGridConfig)
    decoder: Any = field(default_factory=lambda: MLPConfig(width=64, n_hidden_layers=2))
    aabb: tuple = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)

    def build(self) -> "SDFField":
        return SDFField(self)


class SDFField(nn.Module):
    """- ``forward(x [..., 3]) -> sdf [...]`` in world units (also ``sdf(x)``; ``aabb [6]``)
    - ``sdf_and_gradient(x [..., 3]) -> (sdf [...], grad [..., 3])`` with a graph for eikonal losses."""

    def __init__(self, cfg: SDFFieldConfig | None = None):
        super().__init__()
        self.cfg = cfg or SDFFieldConfig()
        self.box = box_of_aabb(self.cfg.aabb)
        self.encoding = self.cfg.encoding.build(3)
        self.decoder = self.cfg.decoder.build(self.encoding.n_output_dims, 1)

    @property
    def aabb(self) -> torch.Tensor:
        """The box ``[6] = (xmin, ymin, zmin, xmax, ymax, zmax)`` (float32, on the field's device)."""
        return self.box.bounds

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """World points ``[..., 3]`` -> unit-cube coordinates ``[..., 3]``."""
        return self.box(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.normalize(x)
        scale = (self.box.hi - self.box.lo).max().to(x.dtype)
        return self.decoder(self.encoding(u), u)[..., 0] * scale

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., 3] -> [...]`` signed distance in world units (``forward``)."""
        return self(x)

    def sdf_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed distance and its spatial gradient (differentiable again, for the eikonal term)."""
        with torch.enable_grad():
            x = x if x.requires_grad else x.detach().requires_grad_(True)
            sdf = self(x)
            (grad,) = torch.autograd.grad(sdf.sum(), x, create_graph=True)
        return sdf, grad
