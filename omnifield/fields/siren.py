"""SIREN: sine-activated MLP decoder (Sitzmann et al., NeurIPS 2020).

Each hidden layer computes ``sin(omega_0 * (W h + b))``; the last layer is linear.
Initialisation follows the paper so that pre-activations stay roughly unit
normal through depth: the first layer draws ``W ~ U(-1/n_in, 1/n_in)`` and
the others ``W ~ U(-sqrt(6/n_in)/omega, sqrt(6/n_in)/omega)`` with ``omega = hidden_omega_0``. Inputs are
expected in ``[-1, 1]``; with ``omega_0 = 30`` the first layer spans about
``30/pi ~ 10`` periods over that range.

Example::

    dec = SirenConfig(width=32, n_hidden_layers=2).build(2, 1)
    y = dec(torch.rand(100, 2) * 2 - 1)     # [100, 1]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from omnifield.config import register_config


@register_config("siren")
@dataclass
class SirenConfig:
    """``n_hidden_layers`` sine layers of width ``width``; ``first_omega_0`` scales the first, ``hidden_omega_0`` the rest."""

    width: int = 64
    n_hidden_layers: int = 3
    first_omega_0: float = 30.0
    hidden_omega_0: float = 30.0

    def build(self, n_in: int, n_out: int) -> "Siren":
        return Siren(n_in, n_out, self)


class Siren(nn.Module):
    """``h [..., n_in] -> [..., n_out]``. ``forward(h, x=None)`` ignores ``x`` like :class:`~omnifield.fields.mlp.MLP`."""

    def __init__(self, n_in: int, n_out: int, cfg: SirenConfig | None = None):
        super().__init__()
        self.cfg = cfg or SirenConfig()
        if self.cfg.width <= 0 or self.cfg.n_hidden_layers < 1:
            raise ValueError("SIREN width must be > 0 and n_hidden_layers >= 1")
        if self.cfg.first_omega_0 <= 0 or self.cfg.hidden_omega_0 <= 0:
            raise ValueError("SIREN omega_0 values must be > 0")
        self.n_in, self.n_out = n_in, n_out
        dims = [n_in] + [self.cfg.width] * self.cfg.n_hidden_layers + [n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.omegas = [self.cfg.first_omega_0] + [self.cfg.hidden_omega_0] * (self.cfg.n_hidden_layers - 1)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw the SIREN initialisation (first layer ``1/n_in``, others ``sqrt(6/n_in)/omega``)."""
        for i, layer in enumerate(self.layers):
            fan_in = layer.in_features
            bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / self.cfg.hidden_omega_0
            layer.weight.uniform_(-bound, bound)
            layer.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))

    def forward(self, h: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        for layer, omega in zip(self.layers[:-1], self.omegas):
            h = torch.sin(omega * layer(h))
        return self.layers[-1](h)
