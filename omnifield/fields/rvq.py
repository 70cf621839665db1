"""Residual vector quantization (RVQ): ``S`` stages of ``C`` codes; stage ``s`` quantizes what stages < s left.

``x ~ sum_s codebook[s, idx_s]``. Codebooks start from residual k-means and then follow the data
with an exponential moving average of the vectors assigned to each code (k-means on the fly).
In training the quantized value is used with a straight-through estimator: ``x + (q - x).detach()``.
"""

from __future__ import annotations

import torch
from torch import nn


def nearest_code(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index ``[N]`` of the nearest row of ``codebook [C, D]`` for each row of ``x [N, D]``.

    ``argmin |c|^2 - 2 x.c`` (the squared distance less ``|x|^2``): one matrix product, no square roots.
    """
    return torch.addmm((codebook * codebook).sum(-1)[None], x, codebook.T, alpha=-2.0).argmin(dim=-1)


def decode_codes(codebooks: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``sum_s codebooks[s, indices[:, s]]``: vectors ``[N, D]`` from ``codebooks [S, C, D]``, ``indices [N, S]``."""
    stages = torch.arange(codebooks.shape[0], device=indices.device)
    return codebooks[stages[None, :], indices.long()].sum(dim=1)


class ResidualVQ(nn.Module):
    """``n_stages`` x ``n_codes`` codebooks over ``dim``-vectors (buffers, not trained by gradients)."""

    def __init__(self, dim: int, n_stages: int = 6, n_codes: int = 64, decay: float = 0.8):
        super().__init__()
        self.decay = decay
        self.register_buffer("codebooks", torch.zeros(n_stages, n_codes, dim))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, iterations: int = 10) -> None:
        """Residual k-means initialisation on ``x [N, D]``."""
        residual = x.detach().clone()
        n_codes = self.codebooks.shape[1]
        gen = torch.Generator(device="cpu").manual_seed(0)
        for s in range(self.codebooks.shape[0]):
            pick = torch.randperm(len(residual), generator=gen)[:n_codes].to(residual.device)
            codes = residual[pick].clone()
            if len(codes) < n_codes:
                codes = torch.cat([codes, codes.new_zeros(n_codes - len(codes), codes.shape[1])])
            for _ in range(iterations):
                idx = nearest_code(residual, codes)
                sums = torch.zeros_like(codes).index_add_(0, idx, residual)
                counts = torch.bincount(idx, minlength=n_codes).to(codes.dtype)[:, None]
                codes = torch.where(counts > 0, sums / counts.clamp_min(1), codes)
            self.codebooks[s] = codes
            residual -= codes[nearest_code(residual, codes)]
        self.initialised.fill_(True)

    def indices(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices ``[N, S]`` of ``x [N, D]``."""
        residual = x.detach()
        out = []
        for codes in self.codebooks:
            idx = nearest_code(residual, codes)
            out.append(idx)
            residual = residual - codes[idx]
        return torch.stack(out, dim=-1)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Vectors ``[N, D]`` from code indices ``[N, S]``."""
        return decode_codes(self.codebooks, indices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Straight-through quantization of ``x [N, D]``; in training mode the codebooks first follow the
        vectors assigned to them (EMA), and ``x`` is decoded with the updated codes (as VQ-VAE's EMA)."""
        idx = self.indices(x)
        if self.training:
            self._ema_update(x.detach(), idx)
        q = self.decode(idx)
        return x + (q - x).detach()

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        residual = x
        n_codes = self.codebooks.shape[1]
        for s in range(self.codebooks.shape[0]):
            codes = self.codebooks[s]
            sums = torch.zeros_like(codes).index_add_(0, idx[:, s], residual)
            counts = torch.bincount(idx[:, s], minlength=n_codes).to(codes.dtype)[:, None]
            target = torch.where(counts > 0, sums / counts.clamp_min(1), codes)
            codes.mul_(self.decay).add_((1 - self.decay) * target)
            residual = residual - codes[idx[:, s]]
