"""ImageField: a 2-D field ``uv in [0,1]^2 -> RGB in [0,1]`` (any 2-D encoding, any decoder, CAM included)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from omnifield.config import register_config
from omnifield.fields.frequency import FrequencyConfig
from omnifield.fields.mlp import MLPConfig


@register_config("image_field")
@dataclass
class ImageFieldConfig:
    """Encoding config (built for 2-D inputs) and decoder config (``build(n_in, 3)``, ``forward(h, uv)``)."""

    encoding: Any = field(default_factory=lambda: FrequencyConfig(n_frequencies=8))
    decoder: Any = field(default_factory=lambda: MLPConfig(width=64, n_hidden_layers=3))

    def build(self) -> "ImageField":
        return ImageField(self)


class ImageField(nn.Module):
    """``forward(uv [..., 2] in [0,1]^2) -> rgb [..., 3]`` (sigmoid); ``uv = ((col + 0.5)/W, (row + 0.5)/H)``."""

    def __init__(self, cfg: ImageFieldConfig | None = None):
        super().__init__()
        self.cfg = cfg or ImageFieldConfig()
        self.encoding = self.cfg.encoding.build(2)
        self.decoder = self.cfg.decoder.build(self.encoding.n_output_dims, 3)

    def forward(self, uv: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoding(uv), uv))


def pixel_coordinates(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """Pixel centres as ``[H, W, 2]`` unit coordinates ``(u, v) = ((col+0.5)/W, (row+0.5)/H)``."""
    v = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    u = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], dim=-1)
