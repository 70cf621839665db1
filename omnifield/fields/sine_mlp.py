"""An MLP whose first layer is a sine (NeuRBF's decoder): ``sin(w0 * (W1 h + b1))`` then ReLU layers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from omnifield.config import register_config


@register_config("sine_mlp")
@dataclass
class SineMLPConfig:
    """``n_hidden_layers`` hidden layers of ``width``; the first uses ``sin(first_omega * .)``, the rest ReLU."""

    width: int = 64
    n_hidden_layers: int = 3
    first_omega: float = 1.0

    def build(self, n_in: int, n_out: int) -> "SineMLP":
        return SineMLP(n_in, n_out, self)


class SineMLP(nn.Module):
    """``h [..., n_in] -> [..., n_out]``; ``forward(h, x=None)`` like :class:`~omnifield.fields.mlp.MLP`."""

    def __init__(self, n_in: int, n_out: int, cfg: SineMLPConfig | None = None):
        super().__init__()
        self.cfg = cfg or SineMLPConfig()
        if self.cfg.width <= 0 or self.cfg.n_hidden_layers < 1:
            raise ValueError("sine MLP needs width > 0 and n_hidden_layers >= 1")
        dims = [n_in] + [self.cfg.width] * self.cfg.n_hidden_layers + [n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, h: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.sin(self.cfg.first_omega * self.layers[0](h))
        for layer in self.layers[1:-1]:
            h = torch.relu(layer(h))
        return self.layers[-1](h)
