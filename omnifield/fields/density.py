"""``DensityField``: a small density-only field, the proposal network of a proposal sampler.

mip-NeRF 360 / nerfacto sample the radiance field where a cheaper density field says the weight is:
a hash grid of a few coarse levels and a one-layer MLP of width 16 (nerfacto's proposal networks:
5 levels, ``2^17`` entries, finest resolution 128 and 256). It has no colour; on two CPU cores a
sample costs ~1/9 of the radiance field's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from omnifield.config import register_config
from omnifield.fields.activations import trunc_exp
from omnifield.fields.box import box_of_aabb, inside_unit_cube
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLPConfig


@register_config("density_field")
@dataclass
class DensityFieldConfig:
    """Encoding, decoder and box of a density-only field; density is ``trunc_exp(logit + density_bias)``."""

    encoding: object = field(default_factory=lambda: HashGridConfig(n_levels=5, log2_hashmap_size=17,
                                                                    max_resolution=128))
    decoder: object = field(default_factory=lambda: MLPConfig(width=16, n_hidden_layers=1))
    aabb: tuple = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
    density_bias: float = -1.0

    def build(self) -> "DensityField":
        return DensityField(self)


class DensityField(nn.Module):
    """``density(x [..., 3]) -> [...]``: non-negative density at points of the box ``aabb`` (zero outside)."""

    def __init__(self, cfg: DensityFieldConfig | None = None):
        super().__init__()
        self.cfg = cfg or DensityFieldConfig()
        self.box = box_of_aabb(self.cfg.aabb)
        self.encoding = self.cfg.encoding.build(3)
        self.decoder = self.cfg.decoder.build(self.encoding.n_output_dims, 1)

    def density(self, x: torch.Tensor) -> torch.Tensor:
        u = self.box(x)
        logit = self.decoder(self.encoding(u.clamp(0.0, 1.0)), u)[..., 0]
        sigma = trunc_exp(logit + self.cfg.density_bias)
        return torch.where(inside_unit_cube(u), sigma, torch.zeros_like(sigma))
