"""NeRF positional encoding: ``[x, sin(2^k pi x'), cos(2^k pi x')]`` with ``x' = 2x - 1``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from omnifield.config import register_config
from omnifield.fields.encoding import Encoding


@register_config("frequency")
@dataclass
class FrequencyConfig:
    """Positional encoding with ``n_frequencies`` octaves (NeRF: 10 for xyz, 4 for directions)."""

    n_frequencies: int = 10
    include_input: bool = True

    def build(self, n_input_dims: int) -> "Frequency":
        return Frequency(n_input_dims, self)


class Frequency(Encoding):
    """``x [N, D] in [0,1]^D -> [N, D*(include_input + 2*n_frequencies)]``.

    The input is first mapped to ``[-1, 1]`` so the lowest octave spans the box once.
    """

    def __init__(self, n_input_dims: int, cfg: FrequencyConfig | None = None):
        super().__init__()
        self.cfg = cfg or FrequencyConfig()
        if self.cfg.n_frequencies < 0:
            raise ValueError("n_frequencies must be >= 0")
        self.n_input_dims = n_input_dims
        self.n_output_dims = n_input_dims * (int(self.cfg.include_input) + 2 * self.cfg.n_frequencies)
        self.register_buffer(
            "scales", math.pi * 2.0 ** torch.arange(self.cfg.n_frequencies, dtype=torch.float32), persistent=False
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        xs = 2.0 * x - 1.0
        angles = (xs[:, None, :] * self.scales.to(x.dtype)[None, :, None]).flatten(1)  # [N, K*D]
        parts = [xs] if self.cfg.include_input else []
        parts += [torch.sin(angles), torch.cos(angles)]
        return torch.cat(parts, dim=-1)
