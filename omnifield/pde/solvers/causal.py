"""Causal training (Wang, Sankaran & Perdikaris 2022): respect time order in the residual loss.

Time is split into ``M`` chunks; chunk ``i`` has mean squared residual ``L_i`` and weight
``w_i = exp(-eps * sum_{k<i} L_k)`` (no gradient through ``w``). The loss is
``mean_i w_i L_i``. ``eps`` rises along a schedule; it moves to the next value once every
weight exceeds ``delta`` (the earlier times are all solved).
"""

from __future__ import annotations

import torch


def causal_weights(chunk_losses: torch.Tensor, eps: float) -> torch.Tensor:  # [M] -> [M]
    """``w_i = exp(-eps * sum_{k<i} L_k)``, detached; ``w_0 = 1`` and ``w`` is non-increasing."""
    losses = chunk_losses.detach()
    before = torch.cumsum(losses, 0) - losses
    return torch.exp(-eps * before)


def chunk_losses(residual_sq: torch.Tensor, chunk: torch.Tensor, n_chunks: int) -> torch.Tensor:
    """Mean of ``residual_sq [N]`` per time chunk index ``chunk [N]`` -> ``[n_chunks]``."""
    sums = torch.zeros(n_chunks, dtype=residual_sq.dtype).index_add_(0, chunk, residual_sq)
    counts = torch.bincount(chunk, minlength=n_chunks).clamp(min=1).to(residual_sq.dtype)
    return sums / counts


class CausalSchedule:
    """The ``eps`` schedule: advance when ``min(w) > delta``; stays at the last value."""

    def __init__(self, eps_values=(1e-2, 1e-1, 1.0, 10.0, 100.0), delta: float = 0.99, n_chunks: int = 32):
        if not eps_values or any(e <= 0 for e in eps_values):
            raise ValueError("causal eps values must be a non-empty list of positive numbers")
        if n_chunks < 1:
            raise ValueError("causal n_chunks must be >= 1")
        self.eps_values, self.delta, self.n_chunks = tuple(eps_values), delta, n_chunks
        self.index = 0

    @property
    def eps(self) -> float:
        return self.eps_values[self.index]

    def update(self, weights: torch.Tensor) -> None:
        """Move to the next ``eps`` when all weights exceed ``delta``."""
        if float(weights.min()) > self.delta and self.index < len(self.eps_values) - 1:
            self.index += 1
