"""The unknown of one INSR time step: a neural field over a box, ``x [N, D] -> values [N, C]``.

Any encoding from :mod:`omnifield.fields` can feed any decoder. Without an
encoding the decoder reads the coordinates mapped to ``[-1, 1]`` (what SIREN
expects). ``periodic=True`` feeds ``(cos 2 pi u, sin 2 pi u)`` of the
unit-box coordinate ``u`` instead, so the field is exactly periodic on the box
(used for the Taylor-Green vortex).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from omnifield.config import register_config
from omnifield.fields.box import BoxField, BoxMapping
from omnifield.fields.sine_mlp import SirenConfig


@register_config("insr_field")
@dataclass
class SpatialFieldConfig:
    """A field on ``box = (lo_1..lo_D, hi_1..hi_D)`` with ``n_out`` channels; ``encoding=None`` means raw coordinates."""

    n_in: int = 1
    n_out: int = 1
    box: tuple = (-1.0, 1.0)
    periodic: bool = False
    encoding: Any = None
    decoder: Any = field(default_factory=lambda: SirenConfig(width=64, n_hidden_layers=3))

    def build(self) -> "SpatialField":
        return SpatialField(self)


class SpatialField(BoxField):
    """``forward(x [N, n_in]) -> [N, n_out]``; ``x`` in world units of the box (a
    :class:`~omnifield.fields.box.BoxField`, the mechanism of the PDE unknowns)."""

    def __init__(self, cfg: SpatialFieldConfig):
        if len(cfg.box) != 2 * cfg.n_in:
            raise ValueError(f"box must be (lo_1..lo_{cfg.n_in}, hi_1..hi_{cfg.n_in}) with hi > lo, got {cfg.box}")
        super().__init__(BoxMapping.from_bounds(cfg.box))
        self.cfg = cfg
        if cfg.encoding is not None:
            self.encoding = cfg.encoding.build(cfg.n_in)
            n_features = self.encoding.n_output_dims
        else:
            self.encoding = None
            n_features = cfg.n_in * (2 if cfg.periodic else 1)
        self.decoder = cfg.decoder.build(n_features, cfg.n_out)

    def inputs(self, u: torch.Tensor) -> torch.Tensor:
        """``u [N, n_in]`` -> the encoding of ``u`` (wrapped when periodic, else clamped to the box), or
        without one ``(cos 2 pi u, sin 2 pi u)`` when periodic, else ``2u - 1``."""
        if self.encoding is not None:
            return self.encoding(torch.remainder(u, 1.0) if self.cfg.periodic else u.clamp(0.0, 1.0))
        if self.cfg.periodic:
            angle = 2.0 * math.pi * u
            return torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)
        return 2.0 * u - 1.0
