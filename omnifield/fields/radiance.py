"""Radiance fields: any encoding + a density decoder + a shared view-dependent colour head.

Layout (shared by every backend, so distillation can match point features)::

    x [..., 3] --(box -> [0,1]^3)--> encoding --> density decoder --> [density logit, 15 geo features]
    sigma = trunc_exp(logit)          rgb = sigmoid(colour MLP([geo features, SH_4(d)(, appearance code)]))

With ``appearance_dim > 0`` the field owns an :class:`AppearanceEmbedding` of ``n_images`` codes
whose code joins the colour head's input (density never sees it); views without a code (held-out
views, orbits, other fields' callers) use the mean of the training codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from omnifield.config import register_config
from omnifield.fields.activations import trunc_exp
from omnifield.fields.appearance import AppearanceEmbedding
from omnifield.fields.box import box_of_aabb, inside_unit_cube
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.sh import spherical_harmonics


@register_config("radiance_field")
@dataclass
class RadianceFieldConfig:
    """A radiance field: ``encoding`` (any encoding config), decoders, SH degree of the view encoding, box;
    ``appearance_dim`` > 0 adds per-image appearance codes for ``n_images`` training images.
    ``density_bias`` shifts the density logit (nerfacto: -1, so a fresh field is a thin fog rather than an
    opaque one across a whole unbounded or NDC space)."""

    encoding: Any = field(default_factory=HashGridConfig)
    density_decoder: Any = field(default_factory=lambda: MLPConfig(width=64, n_hidden_layers=1))
    color_decoder: Any = field(default_factory=lambda: MLPConfig(width=64, n_hidden_layers=2))
    geo_feat_dim: int = 15
    sh_degree: int = 4
    aabb: tuple = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
    appearance_dim: int = 0
    n_images: int = 0
    density_bias: float = 0.0

    def build(self) -> "RadianceField":
        return RadianceField(self)


class RadianceField(nn.Module):
    """Density + view-dependent colour at points of a box.

    - ``point_features(x [..., 3]) -> [..., 1 + geo_feat_dim]`` (density logit first)
    - ``density(x [..., 3]) -> [...]`` (zero outside the box), ``rgb(x [..., 3], d [..., 3]) -> [..., 3]``
    - ``aabb [6]`` and ``box`` (:class:`~omnifield.fields.box.BoxMapping`, world -> unit cube)
    - ``forward(x [..., 3], d [..., 3], appearance [..., E] | None) -> (rgb [..., 3], sigma [...])``;
      ``appearance`` (only with ``cfg.appearance_dim = E > 0``) defaults to the mean training code
    """

    def __init__(self, cfg: RadianceFieldConfig | None = None):
        super().__init__()
        self.cfg = cfg or RadianceFieldConfig()
        self.box = box_of_aabb(self.cfg.aabb)
        self.encoding = self.cfg.encoding.build(3)
        self.density_decoder = self.cfg.density_decoder.build(self.encoding.n_output_dims, 1 + self.cfg.geo_feat_dim)
        dim = self.cfg.appearance_dim
        if dim < 0:
            raise ValueError(f"appearance_dim must be >= 0, got {dim}")
        self.appearance = AppearanceEmbedding(self.cfg.n_images, dim) if dim > 0 else None
        self.color_decoder = self.cfg.color_decoder.build(self.cfg.geo_feat_dim + self.cfg.sh_degree**2 + dim, 3)

    @property
    def aabb(self) -> torch.Tensor:
        """The box ``[6] = (xmin, ymin, zmin, xmax, ymax, zmax)`` (float32, on the field's device)."""
        return self.box.bounds

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """World points ``[..., 3]`` -> unit-cube coordinates ``[..., 3]``."""
        return self.box(x)

    def point_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., 3] -> [..., 1 + geo_feat_dim]``: raw density logit then geometry features."""
        u = self.normalize(x)
        h = self.encoding(u.clamp(0.0, 1.0))
        return self.density_decoder(h, u)

    def density_from_features(self, feats: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Density ``[...]`` from point features, zero outside the box."""
        sigma = trunc_exp(feats[..., 0] + self.cfg.density_bias if self.cfg.density_bias else feats[..., 0])
        return torch.where(inside_unit_cube(self.normalize(x)), sigma, torch.zeros_like(sigma))

    def rgb_from_features(self, feats: torch.Tensor, d: torch.Tensor,
                          appearance: torch.Tensor | None = None) -> torch.Tensor:
        """Colour ``[..., 3]`` from point features, view directions ``[..., 3]`` and, for a field with
        appearance codes, the codes ``[..., E]`` (None: the mean training code)."""
        d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        lead = d.shape[:-1]
        sh = spherical_harmonics(d.reshape(-1, 3), self.cfg.sh_degree).reshape(*lead, self.cfg.sh_degree**2)
        parts = [feats[..., 1:], sh.to(feats.dtype)]
        if self.appearance is not None:
            code = self.appearance.mean_code() if appearance is None else appearance
            parts.append(code.to(feats.dtype).expand(*lead, self.appearance.dim))
        elif appearance is not None:
            raise ValueError("this field has no appearance codes (appearance_dim = 0)")
        h = torch.cat(parts, dim=-1)
        return torch.sigmoid(self.color_decoder(h))

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., 3] -> [...]`` volume density."""
        return self.density_from_features(self.point_features(x), x)

    def rgb(self, x: torch.Tensor, d: torch.Tensor, appearance: torch.Tensor | None = None) -> torch.Tensor:
        """``[..., 3]`` points and view directions ``[..., 3]`` -> colour ``[..., 3]``."""
        return self.rgb_from_features(self.point_features(x), d, appearance)

    def forward(self, x: torch.Tensor, d: torch.Tensor,
                appearance: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.point_features(x)
        return self.rgb_from_features(feats, d, appearance), self.density_from_features(feats, x)
