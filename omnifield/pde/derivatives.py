"""Batched derivatives of a field's output with respect to its input, by autograd.

``x`` must require grad and ``u`` must be computed from it; every helper keeps
the graph (``create_graph=True``) so that residuals of second-order PDEs can be
differentiated again by the optimiser.
"""

from __future__ import annotations

import torch


def gradient(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``du/dx``: ``u [N]`` (or ``[N, 1]``), ``x [N, D]`` -> ``[N, D]``."""
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    return g


def laplacian(u: torch.Tensor, x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """``sum_{a in axes} d2u/dx_a^2``: ``u [N]``, ``x [N, D]`` -> ``[N]``."""
    g = gradient(u, x)
    return sum(gradient(g[:, a], x)[:, a] for a in axes)
