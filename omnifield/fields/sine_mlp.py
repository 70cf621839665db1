"""Sine-activated MLP decoders: one module, two registered configs.

``SineMLP`` computes ``sin(first_omega * (W1 h + b1))``, then hidden layers that are either sines
``sin(hidden_omega * (W h + b))`` or ReLUs, then a linear output layer.

- ``SirenConfig`` (``"siren"``): SIREN (Sitzmann et al., NeurIPS 2020), every hidden layer a sine, with
  the paper's initialisation so that pre-activations stay roughly unit normal through depth: the first
  layer draws ``W ~ U(-1/n_in, 1/n_in)``, the others ``W ~ U(-sqrt(6/n_in)/omega, sqrt(6/n_in)/omega)``
  with ``omega = hidden_omega_0``. Inputs are expected in ``[-1, 1]``; with ``omega_0 = 30`` the first
  layer spans about ``30/pi ~ 10`` periods over that range.
- ``SineMLPConfig`` (``"sine_mlp"``): NeuRBF's decoder, a sine first layer then ReLU layers, PyTorch's
  default initialisation.

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


class SineMLP(nn.Module):
    """``h [..., n_in] -> [..., n_out]``; ``forward(h, x=None)`` ignores ``x`` like :class:`~omnifield.fields.mlp.MLP`.

    ``hidden_omega=None`` makes the hidden layers after the first ReLUs; ``siren_init`` draws SIREN's weights.
    ``omegas`` holds the frequency of each sine layer (the first, then every hidden sine layer).
    """

    def __init__(self, n_in: int, n_out: int, width: int, n_hidden_layers: int, first_omega: float,
                 hidden_omega: float | None = None, siren_init: bool = False):
        super().__init__()
        if width <= 0 or n_hidden_layers < 1:
            raise ValueError("sine MLP needs width > 0 and n_hidden_layers >= 1")
        if first_omega <= 0 or (hidden_omega is not None and hidden_omega <= 0):
            raise ValueError("sine MLP omega values must be > 0")
        self.n_in, self.n_out, self.hidden_omega = n_in, n_out, hidden_omega
        dims = [n_in] + [width] * n_hidden_layers + [n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.omegas = [first_omega] + ([hidden_omega] * (n_hidden_layers - 1) if hidden_omega is not None else [])
        if siren_init:
            self.siren_init()

    @torch.no_grad()
    def siren_init(self) -> None:
        """Draw the SIREN initialisation (first layer ``1/n_in``, others ``sqrt(6/n_in)/hidden_omega``)."""
        for i, layer in enumerate(self.layers):
            fan_in = layer.in_features
            bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / (self.hidden_omega or 1.0)
            layer.weight.uniform_(-bound, bound)
            layer.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))

    def forward(self, h: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.sin(self.omegas[0] * self.layers[0](h))
        for layer in self.layers[1:-1]:
            h = torch.relu(layer(h)) if self.hidden_omega is None else torch.sin(self.hidden_omega * layer(h))
        return self.layers[-1](h)


@register_config("siren")
@dataclass
class SirenConfig:
    """``n_hidden_layers`` sine layers of width ``width``; ``first_omega_0`` scales the first, ``hidden_omega_0`` the rest."""

    width: int = 64
    n_hidden_layers: int = 3
    first_omega_0: float = 30.0
    hidden_omega_0: float = 30.0

    def build(self, n_in: int, n_out: int) -> SineMLP:
        return SineMLP(n_in, n_out, self.width, self.n_hidden_layers, self.first_omega_0, self.hidden_omega_0,
                       siren_init=True)


@register_config("sine_mlp")
@dataclass
class SineMLPConfig:
    """``n_hidden_layers`` hidden layers of ``width``; the first uses ``sin(first_omega * .)``, the rest ReLU."""

    width: int = 64
    n_hidden_layers: int = 3
    first_omega: float = 1.0

    def build(self, n_in: int, n_out: int) -> SineMLP:
        return SineMLP(n_in, n_out, self.width, self.n_hidden_layers, self.first_omega)
