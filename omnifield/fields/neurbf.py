"""NeuRBF: adaptive radial bases with sinusoidal composition (Chen et al., ICCV 2023).

Each basis ``i`` has a frozen centre ``c_i`` and a trainable shape ``A_i`` (``S_i = A_i^T A_i``, so the
anisotropic inverse-quadratic kernel stays positive definite)::

    phi_i(x) = 1 / (1 + (x - c_i)^T S_i (x - c_i))

A point sees only its ``K`` nearest centres ``N(x)``, and each response is expanded by sinusoids
with per-channel, log-spaced frequencies ``omega_c`` (sinusoidal composition)::

    f_c(x) = sum_{i in N(x)} w_ic * sin(omega_c * phi_i(x) + b_c)          [N, C]

The ``K`` nearest are found through a uniform grid of candidate lists built once from the centres
(:func:`build_candidate_lists`): for a cell with centre ``m`` and half-diagonal ``h``, every centre
that can be among the ``K`` nearest of a point of the cell lies within ``d_K(m) + 2h`` of ``m``.
Centres come from weighted k-means (:meth:`NeuRBF.init_centers`, weights = the target's gradient
magnitude or a coarse density); an optional small grid encoding is concatenated (the paper's hybrid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from omnifield.config import register_config
from omnifield.fields.encoding import Encoding
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.kmeans import weighted_kmeans
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.fields.registry import register_field
from omnifield.fields.sine_mlp import SineMLPConfig


@register_config("neurbf")
@dataclass
class NeuRBFConfig:
    """Number of bases, neighbours per point ``K``, channels ``C`` with frequencies log-spaced in
    ``[min_frequency, max_frequency]``, optional hybrid ``grid`` (any encoding config), candidate cap."""

    n_bases: int = 1024
    n_neighbors: int = 8
    n_channels: int = 32
    min_frequency: float = 1.0
    max_frequency: float = 16.0
    grid: Any = None
    max_candidates: int = 128
    seed: int = 0

    def build(self, n_input_dims: int) -> "NeuRBF":
        return NeuRBF(n_input_dims, self)


def candidate_grid_resolution(n_bases: int, n_dims: int) -> int:
    """Cells per axis of the candidate grid: twice the centres per axis, at most 2^16 cells in all."""
    cap = int(round(2 ** (16 / n_dims)))
    return int(min(cap, max(2, round(2 * n_bases ** (1.0 / n_dims)))))


def build_candidate_lists(
    centers: torch.Tensor,  # [B, D] in [0, 1]
    n_neighbors: int,
    grid_res: int,
    max_candidates: int,
) -> tuple[torch.Tensor, bool]:  # ([G^D, M] int64, exact)
    """For every cell of a ``grid_res^D`` grid, the ``M`` centres nearest its middle ``m``, with ``M`` large
    enough that every centre within ``d_K(m) + 2h`` (``h``: the cell's half-diagonal) is listed, so the
    lookup is the exact K-nearest, unless that needs more than ``max_candidates`` (then ``exact`` is False
    and each list holds the ``max_candidates`` nearest). Uses scipy's k-d tree."""
    n_bases, d = centers.shape
    pts = centers.detach().double().cpu().numpy()
    axes = (np.arange(grid_res) + 0.5) / grid_res
    mids = np.stack(np.meshgrid(*([axes] * d), indexing="ij"), axis=-1).reshape(-1, d)  # [G^D, D]
    tree = cKDTree(pts)
    k = min(n_neighbors, n_bases)
    dist_k = tree.query(mids, k=[k], workers=2)[0][:, 0]
    radius = dist_k + math.sqrt(d) / grid_res + 1e-9
    n_needed = int(tree.query_ball_point(mids, radius, return_length=True, workers=2).max())
    m_cap = min(max(n_needed, k), max_candidates, n_bases)
    order = tree.query(mids, k=m_cap, workers=2)[1].reshape(len(mids), m_cap)
    return torch.from_numpy(np.asarray(order, dtype=np.int64)).to(centers.device), n_needed <= m_cap


def cell_index(x: torch.Tensor, grid_res: int) -> torch.Tensor:
    """Flat cell of each point of ``x [N, D]`` in a ``grid_res^D`` grid (row-major, axis 0 slowest)."""
    cell = (x.detach() * grid_res).long().clamp(0, grid_res - 1)
    strides = torch.tensor([grid_res ** (x.shape[1] - 1 - i) for i in range(x.shape[1])], device=x.device)
    return (cell * strides).sum(dim=-1)


def k_nearest_centers(
    x: torch.Tensor,  # [N, D]
    centers: torch.Tensor,  # [B, D]
    candidates: torch.Tensor,  # [G^D, M]
    grid_res: int,
    k: int,
) -> torch.Tensor:  # [N, K] int64
    """Indices of the ``k`` centres nearest each point, searched among its cell's candidates."""
    cand = candidates[cell_index(x, grid_res)]  # [N, M]
    d2 = (x.detach()[:, None, :] - centers[cand]).pow(2).sum(-1)  # [N, M]
    nearest = d2.topk(min(k, cand.shape[1]), dim=1, largest=False).indices
    return cand.gather(1, nearest)


class NeuRBF(Encoding):
    """``x [N, D] in [0,1]^D -> [N, C (+ grid features)]``; centres are buffers, shapes and weights trainable."""

    def __init__(self, n_input_dims: int, cfg: NeuRBFConfig | None = None):
        super().__init__()
        self.cfg = cfg or NeuRBFConfig()
        c = self.cfg
        if c.n_bases < 1 or c.n_neighbors < 1 or c.n_channels < 1 or c.max_candidates < c.n_neighbors:
            raise ValueError("NeuRBF needs n_bases, n_neighbors, n_channels >= 1 and max_candidates >= n_neighbors")
        if not 0 < c.min_frequency <= c.max_frequency:
            raise ValueError("NeuRBF needs 0 < min_frequency <= max_frequency")
        self.n_input_dims = n_input_dims
        self.grid_res = candidate_grid_resolution(c.n_bases, n_input_dims)
        generator = torch.Generator().manual_seed(c.seed)
        self.register_buffer("centers", torch.rand(c.n_bases, n_input_dims, generator=generator))
        self.shapes = nn.Parameter(torch.zeros(c.n_bases, n_input_dims, n_input_dims))
        self.weights = nn.Parameter(torch.randn(c.n_bases, c.n_channels, generator=generator) * 0.1)
        self.phases = nn.Parameter(torch.zeros(c.n_channels))
        freqs = torch.logspace(math.log10(c.min_frequency), math.log10(c.max_frequency), c.n_channels)
        self.register_buffer("frequencies", freqs, persistent=False)
        self.grid = c.grid.build(n_input_dims) if c.grid is not None else None
        self.n_output_dims = c.n_channels + (self.grid.n_output_dims if self.grid is not None else 0)
        self.register_buffer("candidates", torch.zeros(0, 1, dtype=torch.long), persistent=False)
        self.candidates_exact = False
        self._candidates_stale = True
        self._reset_shapes()
        self.register_load_state_dict_post_hook(lambda module, keys: module._mark_stale())

    def _mark_stale(self) -> None:
        self._candidates_stale = True

    def refresh_candidates(self) -> None:
        """(Re)build the candidate lists from the current centres (done lazily before the next lookup)."""
        self.candidates, self.candidates_exact = build_candidate_lists(
            self.centers, self.cfg.n_neighbors, self.grid_res, self.cfg.max_candidates
        )
        self._candidates_stale = False

    def _reset_shapes(self) -> None:
        """Isotropic shapes with ``phi = 1/2`` at the mean distance to the ``K`` nearest other centres."""
        self._candidates_stale = True
        k = min(self.cfg.n_neighbors, self.cfg.n_bases - 1)
        if k >= 1:
            pts = self.centers.detach().double().cpu().numpy()
            dist = cKDTree(pts).query(pts, k=list(range(2, k + 2)), workers=2)[0]
            radius = torch.from_numpy(dist.mean(axis=1)).float().clamp_min(1e-4)
        else:
            radius = torch.full((self.cfg.n_bases,), 0.5)
        eye = torch.eye(self.n_input_dims)
        with torch.no_grad():
            self.shapes.copy_((eye[None] / radius[:, None, None]).to(self.shapes))

    @torch.no_grad()
    def init_centers(self, points: torch.Tensor, weights: torch.Tensor, n_iters: int = 10) -> None:
        """Place the centres by weighted k-means of ``points [P, D]`` in [0,1]^D with ``weights [P]``,
        then reset the shapes (the candidate lists are rebuilt before the next lookup)."""
        generator = torch.Generator().manual_seed(self.cfg.seed)
        centers = weighted_kmeans(points.float().cpu(), weights.float().cpu(), self.cfg.n_bases, n_iters, generator)
        self.centers.copy_(centers.to(self.centers))
        self._reset_shapes()

    def neighbors(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, D] -> [N, K]`` indices of each point's nearest centres."""
        if self._candidates_stale:
            self.refresh_candidates()
        return k_nearest_centers(x, self.centers.to(x.dtype), self.candidates, self.grid_res, self.cfg.n_neighbors)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(0.0, 1.0)
        idx = self.neighbors(x)  # [N, K]
        diff = x[:, None, :] - self.centers.to(x.dtype)[idx]  # [N, K, D]
        y = torch.einsum("nkij,nkj->nki", self.shapes[idx], diff)
        phi = 1.0 / (1.0 + y.pow(2).sum(-1))  # [N, K]
        waves = torch.sin(phi[..., None] * self.frequencies.to(x.dtype) + self.phases)  # [N, K, C]
        feats = (self.weights[idx] * waves).sum(dim=1)  # [N, C]
        if self.grid is None:
            return feats
        return torch.cat([feats, self.grid(x)], dim=-1)


def neurbf_radiance_config() -> RadianceFieldConfig:
    """Radiance-field preset: 4096 bases (K = 8) + a small hash grid, sine-first decoder."""
    return RadianceFieldConfig(
        encoding=NeuRBFConfig(
            n_bases=4096,
            n_neighbors=8,
            n_channels=32,
            grid=HashGridConfig(n_levels=8, n_features_per_level=2, log2_hashmap_size=17, max_resolution=512),
        ),
        density_decoder=SineMLPConfig(width=64, n_hidden_layers=2),
        color_decoder=MLPConfig(width=64, n_hidden_layers=2),
    )


register_field("neurbf", neurbf_radiance_config)
