"""The unknown ``u(x)`` of a PDE as a field of :mod:`omnifield.fields`: an encoding and an MLP decoder.

Physical coordinates are mapped to the unit cube (the :class:`~omnifield.fields.Encoding`
convention). With ``encoding="none"`` the decoder sees ``2s - 1`` directly and periodic
axes are replaced by ``cos(k pi x'), sin(k pi x')`` (``k = 1..n_harmonics``), which makes
the field exactly periodic there.

``arch="modified"`` replaces the plain decoder by the modified MLP of Wang, Teng & Perdikaris
(2021), used by causal PINNs: two encoders ``U = tanh(h W_u + b_u)``, ``V = tanh(h W_v + b_v)``
gate every hidden layer, ``H_{k+1} = (1 - Z_k) * U + Z_k * V`` with ``Z_k = tanh(H_k W_k + b_k)``.

Derivatives each encoding supports (what PDE residuals may use):

- ``none`` / ``frequency`` / ``gaussian_embedding``: smooth (C-infinity), any order.
- ``hashgrid``: piecewise multilinear: first derivatives are piecewise constant and second
  derivatives vanish almost everywhere, so only first-order residuals are meaningful.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from omnifield.errors import OmnifieldError
from omnifield.fields import FrequencyConfig, GaussianEmbeddingConfig, HashGridConfig, MLPConfig

ENCODINGS = ("none", "frequency", "hashgrid", "gaussian_embedding")


@dataclass
class UnknownConfig:
    """Encoding name and its config (``None`` = defaults), tanh MLP size, periodic harmonics."""

    encoding: str = "none"
    encoding_config: object | None = None
    width: int = 20
    n_hidden_layers: int = 4
    activation: str = "tanh"
    n_harmonics: int = 1
    arch: str = "mlp"  # or "modified" (gated modified MLP)


def _encoding_config(name: str, cfg):
    if cfg is not None:
        return cfg
    return {
        "frequency": FrequencyConfig(n_frequencies=4),
        # ours, never tiny-cuda-nn: PDE residuals need second derivatives through the encoding
        "hashgrid": HashGridConfig(n_levels=8, log2_hashmap_size=14, base_resolution=4, max_resolution=256,
                                   implementation="omnifield"),
        "gaussian_embedding": GaussianEmbeddingConfig(),
    }[name]


class PDEField(nn.Module):
    """``x [N, D]`` (physical) ``-> u [N, n_outputs]`` (before any hard-constraint transform)."""

    def __init__(self, lo, hi, n_outputs: int, cfg: UnknownConfig, periodic_axes: tuple[int, ...] = ()):
        super().__init__()
        if cfg.encoding not in ENCODINGS:
            raise OmnifieldError(f"--field: unknown field {cfg.encoding!r}; choose from {', '.join(ENCODINGS)}")
        self.cfg = cfg
        d = len(lo)
        self.register_buffer("lo", torch.as_tensor(lo, dtype=torch.float32))
        self.register_buffer("hi", torch.as_tensor(hi, dtype=torch.float32))
        self.periodic_axes = tuple(periodic_axes) if cfg.encoding == "none" else ()
        if cfg.encoding == "none":
            self.encoding = None
            n_features = d + len(self.periodic_axes) * (2 * cfg.n_harmonics - 1)
        else:
            self.encoding = _encoding_config(cfg.encoding, cfg.encoding_config).build(d)
            n_features = self.encoding.n_output_dims
        if cfg.arch not in ("mlp", "modified"):
            raise OmnifieldError(f"--arch: unknown architecture {cfg.arch!r}; choose mlp or modified")
        if cfg.arch == "modified" and cfg.n_hidden_layers < 1:
            raise OmnifieldError("--arch modified needs at least one hidden layer (--depth >= 1)")
        try:
            self.decoder = MLPConfig(width=cfg.width, n_hidden_layers=cfg.n_hidden_layers, activation=cfg.activation,
                                     implementation="omnifield").build(n_features, n_outputs)
        except ValueError as exc:
            raise OmnifieldError(f"PDE field decoder: {exc}") from None
        self.gates = None
        if cfg.arch == "modified":
            self.gates = nn.ModuleList([nn.Linear(n_features, cfg.width), nn.Linear(n_features, cfg.width)])
        for layer in list(self.decoder.layers) + list(self.gates or []):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.register_buffer("harmonics", math.pi * torch.arange(1, cfg.n_harmonics + 1, dtype=torch.float64))

    def features(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, F]
        s = (x - self.lo.to(x.dtype)) / (self.hi - self.lo).to(x.dtype)
        if self.encoding is not None:
            return self.encoding(s)
        xs = 2.0 * s - 1.0
        plain = [xs[:, a : a + 1] for a in range(xs.shape[1]) if a not in self.periodic_axes]
        angles = [xs[:, a : a + 1] * self.harmonics.to(x.dtype) for a in self.periodic_axes]
        return torch.cat(plain + [f(ang) for ang in angles for f in (torch.cos, torch.sin)], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        if self.gates is None:
            return self.decoder(h)
        layers, act = self.decoder.layers, self.decoder.act
        u, v = (act(g(h)) for g in self.gates)
        for layer in layers[:-1]:
            z = act(layer(h))
            h = u + z * (v - u)  # (1 - z) u + z v
        return layers[-1](h)
