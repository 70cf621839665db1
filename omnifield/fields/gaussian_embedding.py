"""Gaussian feature embedding (Physics-Informed Gaussians, Kang et al.).

``FE(x) = sum_i f_i exp(-1/2 (x - mu_i)^T Sigma_i^{-1} (x - mu_i))`` with learnable
means ``mu [G, D]``, features ``f [G, F]`` and precision factors ``A_i`` with
``Sigma_i^{-1} = A_i^T A_i`` (``A_i`` lower-triangular with a positive
diagonal ``exp(log_precision)``; ``covariance="diagonal"`` keeps only the diagonal).
Smooth in ``x`` to every order, so PDE residuals may take second derivatives.
All ``G`` Gaussians are evaluated densely: memory ``O(N G D)`` per call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from omnifield.config import register_config
from omnifield.fields.encoding import Encoding


@register_config("gaussian_embedding")
@dataclass
class GaussianEmbeddingConfig:
    """``n_gaussians`` Gaussians (on a regular grid when a perfect D-th power, else uniform random),
    ``n_features`` per Gaussian, initial standard deviation ``init_sigma`` (unit-cube units)."""

    n_gaussians: int = 256
    n_features: int = 4
    init_sigma: float = 0.05
    init_feature_std: float = 0.1
    covariance: str = "diagonal"  # or "full"

    def build(self, n_input_dims: int) -> "GaussianEmbedding":
        return GaussianEmbedding(n_input_dims, self)


def _initial_means(n: int, d: int) -> torch.Tensor:  # [n, d] in (0, 1)
    side = round(n ** (1.0 / d))
    if side**d != n:
        return torch.rand(n, d)
    ticks = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    grids = torch.meshgrid(*[ticks] * d, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=-1)


class GaussianEmbedding(Encoding):
    """``x [N, D] in [0,1]^D -> [N, n_features]``: the feature-weighted sum of Gaussians."""

    def __init__(self, n_input_dims: int, cfg: GaussianEmbeddingConfig | None = None):
        super().__init__()
        self.cfg = cfg or GaussianEmbeddingConfig()
        if self.cfg.n_gaussians < 1 or self.cfg.n_features < 1:
            raise ValueError("gaussian_embedding needs n_gaussians >= 1 and n_features >= 1")
        if self.cfg.init_sigma <= 0:
            raise ValueError("gaussian_embedding init_sigma must be > 0")
        if self.cfg.covariance not in ("diagonal", "full"):
            raise ValueError(f"gaussian_embedding covariance must be 'diagonal' or 'full', got {self.cfg.covariance!r}")
        g, d = self.cfg.n_gaussians, n_input_dims
        self.n_input_dims, self.n_output_dims = d, self.cfg.n_features
        self.means = nn.Parameter(_initial_means(g, d))
        self.log_precision = nn.Parameter(torch.full((g, d), -math.log(self.cfg.init_sigma)))
        self.features = nn.Parameter(self.cfg.init_feature_std * torch.randn(g, self.cfg.n_features))
        if self.cfg.covariance == "full":
            self.off_diagonal = nn.Parameter(torch.zeros(g, d * (d - 1) // 2))
            self.register_buffer("_tril", torch.tril_indices(d, d, offset=-1), persistent=False)

    def precision_factor(self) -> torch.Tensor:  # [G, D, D], Sigma^{-1} = A^T A
        """Lower-triangular ``A_i`` with positive diagonal."""
        a = torch.diag_embed(torch.exp(self.log_precision))
        if self.cfg.covariance == "full":
            a = a.clone()
            a[:, self._tril[0], self._tril[1]] = self.off_diagonal
        return a

    def weights(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, G]
        """Unnormalised Gaussian values ``exp(-1/2 |A_i (x - mu_i)|^2)``."""
        diff = x[:, None, :] - self.means.to(x.dtype)[None]  # [N, G, D]
        if self.cfg.covariance == "diagonal":
            z = diff * torch.exp(self.log_precision.to(x.dtype))[None]
        else:
            z = torch.einsum("gij,ngj->ngi", self.precision_factor().to(x.dtype), diff)
        return torch.exp(-0.5 * (z * z).sum(-1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.weights(x) @ self.features.to(x.dtype)
