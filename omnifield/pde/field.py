"""The unknown ``u(x)`` of a PDE as a field of :mod:`omnifield.fields`: an encoding and an MLP decoder.

Physical coordinates are mapped to the unit cube (the :class:`~omnifield.fields.Encoding`
convention). With ``encoding="none"`` the decoder sees ``2s - 1`` directly and periodic
axes are replaced by ``cos(k pi x'), sin(k pi x')`` (``k = 1..n_harmonics``), which makes
the field exactly periodic there.

``arch="modified"`` replaces the plain decoder by the modified MLP of Wang, Teng & Perdikaris
(2021), used by causal PINNs: two encoders ``U = tanh(h W_u + b_u)``, ``V = tanh(h W_v + b_v)``
gate every hidden layer, ``H_{k+1} = (1 - Z_k) * U + Z_k * V`` with ``Z_k = tanh(H_k W_k + b_k)``.

The backends (``UnknownConfig.encoding``) reuse the encodings and decoders of :mod:`omnifield.fields`:

- ``none``: the decoder reads the coordinates (periodic axes embedded).
- ``frequency``, ``hashgrid``, ``gaussian_embedding``: that encoding feeds the decoder.
- ``triplane``: :class:`~omnifield.fields.triplane.TriPlane` (one plane in 2-D; three for 2-D + time),
  concatenated with the coordinates ``2s - 1`` (see below).
- ``neurbf``: :class:`~omnifield.fields.neurbf.NeuRBF` with every basis a neighbour of every point
  (``n_neighbors = n_bases``): a K-nearest truncation would make ``u`` jump where the neighbour set
  changes, which a residual taken at points cannot see.
- ``cam``: the coordinates feed a :class:`~omnifield.fields.cam.CAM` decoder: the tanh MLP with its first
  hidden layer scaled and shifted by small grids over the coordinates (no normalisation, so the zero
  grids it starts from are exactly the plain MLP).

Derivatives each backend supports (what PDE residuals may use):

- ``none`` / ``frequency`` / ``gaussian_embedding`` / ``neurbf``: smooth (C-infinity), any order.
- ``hashgrid``: piecewise multilinear: first derivatives are piecewise constant and second
  derivatives vanish almost everywhere, so only first-order residuals are meaningful.
- ``triplane`` / ``cam``: the grids are piecewise bilinear too; the coordinates carry the smooth part
  (tri-plane: beside the plane features; CAM: the MLP it modulates), the grids a correction whose
  second derivatives through the tanh decoder are piecewise continuous. Derivatives of any order are
  exact through ``grid_lookup`` (the native kernel differentiates its twin beyond the first).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from omnifield.errors import OmnifieldError
from omnifield.fields import FrequencyConfig, GaussianEmbeddingConfig, HashGridConfig, MLPConfig
from omnifield.fields.box import BoxField, BoxMapping
from omnifield.fields.cam import CAM, CAMConfig
from omnifield.fields.encoding import Encoding
from omnifield.fields.neurbf import NeuRBFConfig
from omnifield.fields.triplane import TriPlaneConfig

ENCODINGS = ("none", "frequency", "hashgrid", "gaussian_embedding", "triplane", "neurbf", "cam")

# Adam learning rate of the grid/basis parameters relative to the decoder's (see parameter_groups):
# the grids of the new backends train with a higher rate than the MLP weights.
ENCODING_LR_SCALE = {"triplane": 10.0, "neurbf": 10.0, "cam": 10.0}


@dataclass
class UnknownConfig:
    """Backend name and its config (``None`` = the PDE defaults below; for ``cam`` a :class:`CAMConfig`
    whose base MLP and coordinate dimension are set from the fields here), tanh MLP size, periodic
    harmonics, decoder architecture."""

    encoding: str = "none"
    encoding_config: object | None = None
    width: int = 20
    n_hidden_layers: int = 4
    activation: str = "tanh"
    n_harmonics: int = 1
    arch: str = "mlp"  # or "modified" (gated modified MLP)


def default_encoding_config(name: str, n_dims: int):
    """The PDE-sized config of backend ``name`` for ``n_dims``-D inputs (a few thousand parameters)."""
    if name == "frequency":
        return FrequencyConfig(n_frequencies=4)
    if name == "hashgrid":  # ours, never tiny-cuda-nn: residuals need second derivatives through the encoding
        return HashGridConfig(n_levels=8, log2_hashmap_size=14, base_resolution=4, max_resolution=256,
                              implementation="omnifield")
    if name == "gaussian_embedding":
        return GaussianEmbeddingConfig()
    if name == "triplane":
        return TriPlaneConfig(resolutions=(8, 16), n_features=4, aggregation="concat", init_scale=0.1)
    if name == "neurbf":
        return NeuRBFConfig(n_bases=32, n_neighbors=32, n_channels=8, min_frequency=1.0, max_frequency=8.0,
                            max_candidates=32)
    if name == "cam":
        return CAMConfig(resolution=8, normalization="none", n_modulated=1)
    raise OmnifieldError(f"--field: unknown field {name!r}; choose from {', '.join(ENCODINGS)}")


class PDEField(BoxField):
    """``x [N, D]`` (physical) ``-> u [N, n_outputs]`` (before any hard-constraint transform): a
    :class:`~omnifield.fields.box.BoxField` whose decoder input is the coordinates (periodic axes
    embedded) and/or an encoding, decoded by a tanh MLP, CAM or the gated modified MLP."""

    def __init__(self, lo, hi, n_outputs: int, cfg: UnknownConfig, periodic_axes: tuple[int, ...] = ()):
        super().__init__(BoxMapping(lo, hi))
        if cfg.encoding not in ENCODINGS:
            raise OmnifieldError(f"--field: unknown field {cfg.encoding!r}; choose from {', '.join(ENCODINGS)}")
        if cfg.arch not in ("mlp", "modified"):
            raise OmnifieldError(f"--arch: unknown architecture {cfg.arch!r}; choose mlp or modified")
        if cfg.arch == "modified" and cfg.n_hidden_layers < 1:
            raise OmnifieldError("--arch modified needs at least one hidden layer (--depth >= 1)")
        if cfg.arch == "modified" and cfg.encoding == "cam":
            raise OmnifieldError("--field cam modulates the plain MLP; use --arch mlp")
        self.cfg = cfg
        d = self.box.n_dims
        self.periodic_axes = tuple(periodic_axes) if cfg.encoding == "none" else ()
        self.encoding = None
        self.with_coordinates = cfg.encoding in ("none", "cam", "triplane")
        n_features = d + len(self.periodic_axes) * (2 * cfg.n_harmonics - 1) if self.with_coordinates else 0
        sub_cfg = cfg.encoding_config or (default_encoding_config(cfg.encoding, d) if cfg.encoding != "none" else None)
        base = MLPConfig(width=cfg.width, n_hidden_layers=cfg.n_hidden_layers, activation=cfg.activation,
                         implementation="omnifield")
        try:
            if cfg.encoding not in ("none", "cam"):
                self.encoding = sub_cfg.build(d)
                n_features += self.encoding.n_output_dims
            if cfg.encoding == "cam":
                self.decoder = CAM(n_features, n_outputs, dataclasses.replace(sub_cfg, base=base, coord_dims=d))
            else:
                self.decoder = base.build(n_features, n_outputs)
        except ValueError as exc:
            raise OmnifieldError(f"--field {cfg.encoding}: {exc}") from None
        self.gates = None
        if cfg.arch == "modified":
            self.gates = nn.ModuleList([nn.Linear(n_features, cfg.width), nn.Linear(n_features, cfg.width)])
        for layer in list(self.mlp.layers) + list(self.gates or []):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.register_buffer("harmonics", math.pi * torch.arange(1, cfg.n_harmonics + 1, dtype=torch.float64))

    @property
    def mlp(self) -> nn.Module:
        """The tanh MLP (CAM's base MLP for ``cam``)."""
        return self.decoder.mlp if isinstance(self.decoder, CAM) else self.decoder

    def grid_parameters(self) -> list[nn.Parameter]:
        """Parameters of the encoding and of CAM's modulation grids (trained at the encoding rate)."""
        return grid_parameters(self)

    def inputs(self, s: torch.Tensor) -> torch.Tensor:
        """``s [N, D]`` -> ``[N, F]``: coordinates ``2s - 1`` (periodic axes as ``cos, sin(k pi (2s - 1))``)
        for ``none``/``cam``/``triplane``, then the encoding of ``s``."""
        parts = []
        if self.with_coordinates:
            xs = 2.0 * s - 1.0
            plain = [xs[:, a : a + 1] for a in range(xs.shape[1]) if a not in self.periodic_axes]
            angles = [xs[:, a : a + 1] * self.harmonics.to(s.dtype) for a in self.periodic_axes]
            parts = plain + [f(ang) for ang in angles for f in (torch.cos, torch.sin)]
        if self.encoding is not None:
            parts.append(self.encoding(s))
        return torch.cat(parts, dim=-1)

    def decode(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The decoder, or the modified MLP gated by ``U``, ``V`` (``arch="modified"``)."""
        if self.gates is None:
            return self.decoder(h, s)
        layers, act = self.decoder.layers, self.decoder.act
        u, v = (act(g(h)) for g in self.gates)
        for layer in layers[:-1]:
            z = act(layer(h))
            h = u + z * (v - u)  # (1 - z) u + z v
        return layers[-1](h)


def encoding_lr(name: str, lr: float) -> float:
    """The default Adam rate of backend ``name``'s grids: ``lr`` times :data:`ENCODING_LR_SCALE`."""
    return lr * ENCODING_LR_SCALE.get(name, 1.0)


def grid_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of every :class:`~omnifield.fields.Encoding` in ``module`` and the modulation grids
    of every :class:`~omnifield.fields.cam.CAM` (what trains at the encoding rate)."""
    params = [p for m in module.modules() if isinstance(m, Encoding) for p in m.parameters()]
    params += [m.grids for m in module.modules() if isinstance(m, CAM)]
    unique = {id(p): p for p in params}
    return list(unique.values())


def parameter_groups(module: nn.Module, lr: float, grid_lr: float) -> list[dict]:
    """Adam groups of ``module``: :func:`grid_parameters` at ``grid_lr``, every other parameter at ``lr``
    (frozen ones left out, empty groups dropped)."""
    grid = [p for p in grid_parameters(module) if p.requires_grad]
    taken = {id(p) for p in grid}
    rest = [p for p in module.parameters() if p.requires_grad and id(p) not in taken]
    return [g for g in ({"params": rest, "lr": lr}, {"params": grid, "lr": grid_lr}) if g["params"]]
