"""CAM: coordinate-aware modulation of an MLP decoder (Lee et al., AAAI 2024).

Wraps any :class:`~omnifield.fields.mlp.MLP` config. After each of the first ``n_modulated`` hidden linear
layers (default 1, which keeps the grids small), the features are normalised and modulated by a scale and a shift read from small grids over the input coordinate ``x``::

    h <- act( gamma_l(x) * norm(W_l h + b_l) + beta_l(x) ),   gamma_l = 1 + G^gamma_l(x),  beta_l = G^beta_l(x)

The modulated layers run in :meth:`MLP.modulated` (the fused native MLP kernel for ReLU MLPs on the CPU,
its torch twin elsewhere).

The grids (all zero at start) are a 2-D grid for images (``coord_dims=2``), three planes summed for 3-D
(``coord_dims=3``) and a 1-D grid over time, the last coordinate, for dynamic fields (``coord_dims=4``).
``norm`` is a parameter-free layer norm (``"layer"``) or none (``"none"``; then zero modulation is exactly
the base MLP). CAM is a decoder: ``forward(h, x)`` takes the unit-cube coordinate ``x`` as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from omnifield.config import register_config
from omnifield.fields.frequency import FrequencyConfig
from omnifield.fields.grid_lookup import axis_pairs, grid_lookup
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLP, MLPConfig
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.fields.registry import register_field

NORMALIZATIONS = ("layer", "none")


@register_config("cam")
@dataclass
class CAMConfig:
    """A base MLP config, the coordinate dimension (2 image, 3 space, 4 space-time), grid resolution, norm,
    and how many hidden layers (the first ones) are modulated."""

    base: Any = field(default_factory=lambda: MLPConfig(width=64, n_hidden_layers=2))
    coord_dims: int = 3
    resolution: int = 16
    normalization: str = "layer"
    n_modulated: int = 1

    def build(self, n_in: int, n_out: int) -> "CAM":
        return CAM(n_in, n_out, self)


class CAM(nn.Module):
    """``forward(h [..., n_in], x [..., coord_dims] in [0,1]) -> [..., n_out]``; the base MLP is ``self.mlp``."""

    def __init__(self, n_in: int, n_out: int, cfg: CAMConfig | None = None):
        super().__init__()
        self.cfg = cfg or CAMConfig()
        if not isinstance(self.cfg.base, MLPConfig):
            raise ValueError(f"CAM wraps an MLP config, got {type(self.cfg.base).__name__}")
        if self.cfg.coord_dims not in (2, 3, 4):
            raise ValueError(f"CAM coord_dims must be 2, 3 or 4, got {self.cfg.coord_dims}")
        if self.cfg.resolution < 2:
            raise ValueError("CAM grid resolution must be >= 2")
        if self.cfg.normalization not in NORMALIZATIONS:
            raise ValueError(f"CAM normalization must be one of {NORMALIZATIONS}, got {self.cfg.normalization!r}")
        if not 1 <= self.cfg.n_modulated <= self.cfg.base.n_hidden_layers:
            raise ValueError("CAM n_modulated must be between 1 and the base MLP's n_hidden_layers")
        self.mlp = MLP(n_in, n_out, self.cfg.base)  # always ours: CAM modulates its hidden layers
        self.width, self.n_modulated = self.cfg.base.width, self.cfg.n_modulated
        channels = 2 * self.width * self.n_modulated
        res = self.cfg.resolution
        if self.cfg.coord_dims == 4:  # a 1-D grid over time
            self.register_buffer("grid_axes", torch.tensor([[3]]), persistent=False)
            shape = (1, res, channels)
        else:
            pairs = axis_pairs(self.cfg.coord_dims)
            self.register_buffer("grid_axes", torch.tensor(pairs), persistent=False)
            shape = (len(pairs), res, res, channels)
        self.grids = nn.Parameter(torch.zeros(shape))

    def modulation(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, coord_dims] -> [N, 2, n_modulated, width]``: the offsets of the scales (gamma - 1), then
        the shifts (beta), summed over the grids."""
        g = grid_lookup(self.grids, x.clamp(0.0, 1.0)[:, self.grid_axes], sum_grids=True)  # [N, 2*W*L]
        return g.view(-1, 2, self.n_modulated, self.width)

    def forward(self, h: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        if x is None or x.shape[-1] != self.cfg.coord_dims or x.shape[:-1] != h.shape[:-1]:
            got = None if x is None else tuple(x.shape)
            raise ValueError(f"CAM needs coordinates x [..., {self.cfg.coord_dims}] beside h {tuple(h.shape)}, got {got}")
        lead = h.shape[:-1]
        h = h.reshape(-1, h.shape[-1])
        modulation = self.modulation(x.reshape(-1, x.shape[-1]).to(h.dtype))
        out = self.mlp.modulated(h, modulation, layer_norm=self.cfg.normalization == "layer")
        return out.reshape(*lead, out.shape[-1])


def hashgrid_cam_radiance_config() -> RadianceFieldConfig:
    """The hash-grid preset with a CAM density decoder (tri-plane modulation grids of 16^2)."""
    return RadianceFieldConfig(
        encoding=HashGridConfig(),
        density_decoder=CAMConfig(base=MLPConfig(width=64, n_hidden_layers=1), coord_dims=3, resolution=16),
    )


def mlp_cam_radiance_config() -> RadianceFieldConfig:
    """The vanilla-NeRF preset (positional encoding + 4 x 128 MLP) with a CAM density decoder."""
    return RadianceFieldConfig(
        encoding=FrequencyConfig(n_frequencies=10),
        density_decoder=CAMConfig(base=MLPConfig(width=128, n_hidden_layers=4), coord_dims=3, resolution=16),
        color_decoder=MLPConfig(width=64, n_hidden_layers=1),
    )


register_field("hashgrid_cam", hashgrid_cam_radiance_config)
register_field("mlp_cam", mlp_cam_radiance_config)
