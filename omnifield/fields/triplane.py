"""Tri-plane encoding (EG3D, Chan et al. 2022; K-Planes, Fridovich-Keil et al. 2023).

A ``D``-D point is projected onto the ``D choose 2`` axis-aligned planes (3-D:
xy, xz, yz; 4-D space-time: the six K-Planes), each plane a ``R x R x F``
feature grid read bilinearly. The plane features are aggregated by ``sum``
(EG3D), ``product`` (Hadamard, K-Planes) or ``concat``; several resolutions
(multi-scale) are concatenated::

    f(x) = concat_s  agg_{(i,j)} P_s,ij(x_i, x_j)        [N, S * F]  (concat: [N, S * P * F])

With ``product`` the planes start near 1 (uniform in [0.1, 0.5] for space,
exactly 1 for planes that involve the time axis, so a 4-D field starts static).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from omnifield.config import register_config
from omnifield.fields.encoding import Encoding
from omnifield.fields.grid_lookup import axis_pairs, grid_lookup, product_along
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.fields.registry import register_field

AGGREGATIONS = ("sum", "product", "concat")


@register_config("triplane")
@dataclass
class TriPlaneConfig:
    """Plane resolutions (one per scale), channels per plane, aggregation (sum | product | concat)."""

    resolutions: tuple = (32, 64, 128)
    n_features: int = 16
    aggregation: str = "product"
    init_scale: float = 0.1

    def build(self, n_input_dims: int) -> "TriPlane":
        return TriPlane(n_input_dims, self)


class TriPlane(Encoding):
    """``x [N, D] in [0,1]^D -> [N, S*F]`` (``[N, S*P*F]`` for concat), ``D`` in 2..4, ``P = D(D-1)/2`` planes."""

    def __init__(self, n_input_dims: int, cfg: TriPlaneConfig | None = None):
        super().__init__()
        self.cfg = cfg or TriPlaneConfig()
        if not 2 <= n_input_dims <= 4:
            raise ValueError(f"tri-plane takes 2-D, 3-D or 4-D inputs, got {n_input_dims}-D")
        if self.cfg.aggregation not in AGGREGATIONS:
            raise ValueError(f"tri-plane aggregation must be one of {AGGREGATIONS}, got {self.cfg.aggregation!r}")
        if not self.cfg.resolutions or min(self.cfg.resolutions) < 2 or self.cfg.n_features < 1:
            raise ValueError("tri-plane needs at least one resolution >= 2 and n_features >= 1")
        self.n_input_dims = n_input_dims
        self.pairs = axis_pairs(n_input_dims)
        self.register_buffer("pair_index", torch.tensor(self.pairs, dtype=torch.long), persistent=False)
        per_scale = self.cfg.n_features * (len(self.pairs) if self.cfg.aggregation == "concat" else 1)
        self.n_output_dims = per_scale * len(self.cfg.resolutions)
        self.planes = nn.ParameterList(self._init_planes(int(r)) for r in self.cfg.resolutions)

    def _init_planes(self, res: int) -> nn.Parameter:
        shape = (len(self.pairs), res, res, self.cfg.n_features)
        if self.cfg.aggregation == "product":
            planes = torch.empty(shape).uniform_(0.1, 0.5)
            for p, pair in enumerate(self.pairs):
                if 3 in pair:  # K-Planes: time planes start at 1 (a static scene)
                    planes[p] = 1.0
        else:
            planes = torch.randn(shape) * self.cfg.init_scale
        return nn.Parameter(planes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        coords = x.clamp(0.0, 1.0)[:, self.pair_index]  # [N, P, 2]
        outs = []
        for planes in self.planes:
            if self.cfg.aggregation == "sum":
                outs.append(grid_lookup(planes, coords, sum_grids=True))  # [N, F]
            elif self.cfg.aggregation == "product":
                outs.append(product_along(grid_lookup(planes, coords), 1))  # [N, P, F] -> [N, F]
            else:
                outs.append(grid_lookup(planes, coords).flatten(1))
        return torch.cat(outs, dim=-1)


def triplane_radiance_config() -> RadianceFieldConfig:
    """Radiance-field preset: K-Planes-style product tri-plane, 3 scales of 16 channels."""
    return RadianceFieldConfig(
        encoding=TriPlaneConfig(resolutions=(32, 64, 128), n_features=16, aggregation="product"),
        density_decoder=MLPConfig(width=64, n_hidden_layers=1),
    )


register_field("triplane", triplane_radiance_config)
