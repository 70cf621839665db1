"""Fully connected decoders."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from omnifield.backend import resolve_implementation
from omnifield.config import register_config

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "none": nn.Identity,
    "sigmoid": nn.Sigmoid,
}


@register_config("mlp")
@dataclass
class MLPConfig:
    """``n_hidden_layers`` hidden layers of width ``width``; activation by name (relu, tanh, silu, ...)."""

    width: int = 64
    n_hidden_layers: int = 1
    activation: str = "relu"
    output_activation: str = "none"
    bias: bool = True
    implementation: str = "auto"  # auto | omnifield | tcnn (auto = tiny-cuda-nn's fused MLP on CUDA when installed)

    def build(self, n_in: int, n_out: int) -> nn.Module:
        """Our :class:`MLP`, or tiny-cuda-nn's when the implementation resolves to it and it can express
        this MLP (its activations, at least one hidden layer; it has no biases)."""
        if resolve_implementation(self.implementation, "MLP") == "tcnn":
            from omnifield.fields.tcnn import TcnnMLP, mlp_network_config

            network = mlp_network_config(self)
            if network is not None:
                return TcnnMLP(n_in, n_out, self, network)
            if self.implementation == "tcnn":
                raise ValueError(f"tiny-cuda-nn has no MLP with activation {self.activation!r}/"
                                 f"{self.output_activation!r} and {self.n_hidden_layers} hidden layers")
        return MLP(n_in, n_out, self)


class MLP(nn.Module):
    """``h [..., n_in] -> [..., n_out]``. ``forward(h, x=None)``: ``x`` (the input coordinate) is
    accepted and ignored so that coordinate-aware decoders share the same call."""

    def __init__(self, n_in: int, n_out: int, cfg: MLPConfig | None = None):
        super().__init__()
        self.cfg = cfg or MLPConfig()
        for name in (self.cfg.activation, self.cfg.output_activation):
            if name not in _ACTIVATIONS:
                raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
        if self.cfg.width <= 0 or self.cfg.n_hidden_layers < 0:
            raise ValueError("MLP width must be > 0 and n_hidden_layers >= 0")
        self.n_in, self.n_out = n_in, n_out
        dims = [n_in] + [self.cfg.width] * self.cfg.n_hidden_layers + [n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=self.cfg.bias) for a, b in zip(dims[:-1], dims[1:]))
        self.act = _ACTIVATIONS[self.cfg.activation]()
        self.out_act = _ACTIVATIONS[self.cfg.output_activation]()

    def forward(self, h: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers[:-1]:
            h = self.act(layer(h))
        return self.out_act(self.layers[-1](h))
