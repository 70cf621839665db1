"""The physics-informed loss: residual at collocation points (optionally causal) + soft conditions.

Collocation points are uniform, or (``adaptive_k > 0``) drawn by residual-based adaptive
distribution, RAD (Wu, Zhu, Tan, Kartha & Lu 2023): from a uniform pool of
``pool_factor * n_interior`` points, each is kept with probability proportional to
``|r|^k / mean(|r|^k) + c``, so points crowd where the residual is large (a shock) while
``c`` keeps the rest of the domain covered.

``sampling="sobol"`` draws the collocation points (and RAD's pool) as scrambled Sobol sets instead
of independent uniform points. A fixed batch (the L-BFGS phase) then covers the domain evenly,
with no gaps in which the fit can leave the residual large (Helmholtz PIG: the mean squared
residual on fresh points was 1.2-1.5x that on the batch, against ~2x with uniform points). With
causal chunks, each point's chunk is the one its time falls in (Sobol sets of ``2^k >= chunks``
points put the same number in each).
"""

from __future__ import annotations

import torch
from torch import nn

from omnifield.errors import OmnifieldError
from omnifield.pde.problem import Condition, Problem
from omnifield.pde.solvers.causal import CausalSchedule, causal_weights, chunk_losses

SAMPLINGS = ("uniform", "sobol")


class PhysicsLoss:
    """``loss(batch) = mean residual^2 (or causal sum) + sum_c weight_c * mean |condition residual|^2``.

    ``soft_conditions`` are the conditions not already imposed by the solution's construction.
    """

    def __init__(
        self,
        problem: Problem,
        solution: nn.Module,
        n_interior: int,
        n_condition: int,
        soft_conditions: list[Condition],
        condition_weight: float = 1.0,
        causal: CausalSchedule | None = None,
        dtype: torch.dtype = torch.float32,
        adaptive_k: float = 0.0,
        adaptive_c: float = 1.0,
        pool_factor: int = 8,
        sampling: str = "uniform",
    ):
        if causal is not None and problem.time_axis is None:
            raise OmnifieldError(f"--solver causal: problem {problem.name!r} has no time axis")
        if n_interior < 1:
            raise OmnifieldError("--n-interior must be >= 1")
        if adaptive_k < 0 or adaptive_c < 0 or pool_factor < 1:
            raise OmnifieldError("--adaptive-k and --adaptive-c must be >= 0 and the pool factor >= 1")
        if adaptive_k > 0 and causal is not None:
            raise OmnifieldError("--adaptive-k: residual-adaptive sampling and causal time chunks do not combine")
        if sampling not in SAMPLINGS:
            raise OmnifieldError(f"--sampling: unknown sampling {sampling!r}; choose from {', '.join(SAMPLINGS)}")
        self.adaptive_k, self.adaptive_c, self.pool_factor = adaptive_k, adaptive_c, pool_factor
        self.quasi = sampling == "sobol"
        self.problem, self.solution, self.causal = problem, solution, causal
        self.n_interior, self.n_condition = n_interior, n_condition
        self.soft_conditions, self.condition_weight = soft_conditions, condition_weight
        self.dtype = dtype
        self.last_weights: torch.Tensor | None = None
        self.frozen_weights: torch.Tensor | None = None  # causal weights held fixed (L-BFGS blocks)

    def sample(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Fresh collocation points (time-stratified per chunk when causal) and condition points."""
        if self.adaptive_k > 0:
            pool = self.problem.sample_interior(self.pool_factor * self.n_interior, generator, self.quasi)
            r = self.residual_magnitude(pool.to(self.dtype)).to(pool.dtype)
            x = pool[rad_select(r, self.n_interior, self.adaptive_k, self.adaptive_c, generator)]
        else:
            x = self.problem.sample_interior(self.n_interior, generator, self.quasi)
        batch = {"interior": x}
        if self.causal is not None:
            m, axis = self.causal.n_chunks, self.problem.time_axis
            t0, t1 = self.problem.lo[axis], self.problem.hi[axis]
            if self.quasi:  # the chunk each time falls in
                chunk = ((x[:, axis] - t0) / (t1 - t0) * m).long().clamp(0, m - 1)
            else:  # the same number of points per chunk, uniform within it
                chunk = torch.arange(self.n_interior) % m
                u = (chunk.to(x.dtype) + torch.rand(self.n_interior, generator=generator)) / m
                x[:, axis] = t0 + (t1 - t0) * u
            batch["chunk"] = chunk
        for cond in self.soft_conditions:
            batch[cond.name] = cond.sample(self.n_condition, generator)
        return {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in batch.items()}

    def residual_magnitude(self, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """``|residual| [N]`` at points ``x [N, D]`` (no graph kept)."""
        out = []
        with torch.enable_grad():
            for part in x.split(chunk):
                part = part.detach().requires_grad_(True)
                out.append(self.problem.residual(part, self.solution(part)).detach().norm(dim=-1))
        return torch.cat(out)

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch["interior"].detach().requires_grad_(True)
        res_sq = self.problem.residual(x, self.solution(x)).pow(2).sum(-1)  # [N]
        parts: dict[str, float] = {}
        if self.causal is not None:
            losses = chunk_losses(res_sq, batch["chunk"], self.causal.n_chunks)
            w = causal_weights(losses, self.causal.eps)
            self.last_weights = w
            if self.frozen_weights is not None:
                w = self.frozen_weights
            total = (w * losses).mean()
            parts["min_weight"] = float(w.min())
            parts["eps"] = self.causal.eps
        else:
            total = res_sq.mean()
        parts["residual"] = float(res_sq.detach().mean())
        for cond in self.soft_conditions:
            term = cond.residual(self.solution, batch[cond.name]).pow(2).sum(-1).mean()
            parts[cond.name] = float(term.detach())
            total = total + self.condition_weight * term
        parts["loss"] = float(total.detach())
        return total, parts


def rad_select(residual: torch.Tensor, n: int, k: float, c: float, generator: torch.Generator) -> torch.Tensor:
    """Indices ``[n]`` drawn without replacement from ``residual [M]`` (M >= n) with probability
    proportional to ``|r|^k / mean(|r|^k) + c`` (RAD)."""
    density = residual.abs().double() ** k
    density = density / density.mean().clamp_min(1e-300) + c
    if not bool(torch.isfinite(density).all()) or float(density.sum()) <= 0:
        density = torch.ones_like(density)  # a non-finite residual: fall back to uniform
    return torch.multinomial(density, n, replacement=False, generator=generator)
