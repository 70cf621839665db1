"""Gaussian feature embedding (Physics-Informed Gaussians, Kang et al.).

``FE(x) = sum_i f_i exp(-1/2 (x - mu_i)^T Sigma_i^{-1} (x - mu_i))`` with learnable
means ``mu [G, D]``, features ``f [G, F]`` and precision factors ``A_i`` with
``Sigma_i^{-1} = A_i^T A_i`` (``A_i`` lower-triangular with a positive
diagonal ``exp(log_precision)``; ``covariance="diagonal"`` keeps only the diagonal).
Smooth in ``x`` to every order, so PDE residuals may take second derivatives.
By default all ``G`` Gaussians are evaluated densely (``O(N G)`` per call); with ``n_neighbors = K``
each point sums only the ``K`` Gaussians with the smallest Mahalanobis distance (chosen without
gradient; the sum and its derivatives are exact over those ``K``), which makes the double-backward
of PDE residuals ``O(N K)``. The truncated sum jumps where the neighbour set changes, so ``K`` must
cover the Gaussians within about 3 sigma of every point.
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
    n_neighbors: int = 0  # > 0: each point sums only its n_neighbors nearest Gaussians (Mahalanobis)

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
        if self.cfg.n_neighbors < 0:
            raise ValueError("gaussian_embedding n_neighbors must be >= 0 (0 = all Gaussians)")
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
        """Unnormalised Gaussian values ``exp(-1/2 |A_i (x - mu_i)|^2)``.

        The quadratic form is expanded, ``x^T P x - 2 x^T P mu + mu^T P mu`` with ``P = A^T A``, so that
        it is a few ``[N, *] @ [*, G]`` matrix products instead of an ``[N, G, D]`` tensor (much
        cheaper under double backward).
        """
        mu = self.means.to(x.dtype)  # [G, D]
        if self.cfg.covariance == "diagonal":
            p = torch.exp(2.0 * self.log_precision.to(x.dtype))  # [G, D] diagonal of P
            q = (x * x) @ p.T - 2.0 * x @ (p * mu).T + (p * mu * mu).sum(-1)
        else:
            a = self.precision_factor().to(x.dtype)
            prec = a.transpose(1, 2) @ a  # [G, D, D]
            p_mu = (prec @ mu[:, :, None])[:, :, 0]  # [G, D]
            outer = (x[:, :, None] * x[:, None, :]).flatten(1)  # [N, D*D]
            q = outer @ prec.flatten(1).T - 2.0 * x @ p_mu.T + (p_mu * mu).sum(-1)
        return torch.exp(-0.5 * q)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        k = self.cfg.n_neighbors
        if k == 0 or k >= self.cfg.n_gaussians:
            return self.weights(x) @ self.features.to(x.dtype)
        with torch.no_grad():
            nearest = torch.topk(self.weights(x), k, dim=1).indices  # [N, K]
        diff = x[:, None, :] - self.means.to(x.dtype)[nearest]  # [N, K, D]
        if self.cfg.covariance == "diagonal":
            z = diff * torch.exp(self.log_precision.to(x.dtype))[nearest]
        else:
            z = (self.precision_factor().to(x.dtype)[nearest] @ diff[..., None])[..., 0]
        w = torch.exp(-0.5 * (z * z).sum(-1))  # [N, K]
        return (w[..., None] * self.features.to(x.dtype)[nearest]).sum(1)
