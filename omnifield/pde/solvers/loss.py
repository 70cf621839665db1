"""The physics-informed loss: residual at collocation points (optionally causal) + soft conditions."""

from __future__ import annotations

import torch
from torch import nn

from omnifield.errors import OmnifieldError
from omnifield.pde.problem import Condition, Problem
from omnifield.pde.solvers.causal import CausalSchedule, causal_weights, chunk_losses


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
    ):
        if causal is not None and problem.time_axis is None:
            raise OmnifieldError(f"--solver causal: problem {problem.name!r} has no time axis")
        if n_interior < 1:
            raise OmnifieldError("--n-interior must be >= 1")
        self.problem, self.solution, self.causal = problem, solution, causal
        self.n_interior, self.n_condition = n_interior, n_condition
        self.soft_conditions, self.condition_weight = soft_conditions, condition_weight
        self.dtype = dtype
        self.last_weights: torch.Tensor | None = None

    def sample(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Fresh collocation points (time-stratified per chunk when causal) and condition points."""
        x = self.problem.sample_interior(self.n_interior, generator)
        batch = {"interior": x}
        if self.causal is not None:
            m, axis = self.causal.n_chunks, self.problem.time_axis
            chunk = torch.arange(self.n_interior) % m
            t0, t1 = self.problem.lo[axis], self.problem.hi[axis]
            u = (chunk.to(x.dtype) + torch.rand(self.n_interior, generator=generator)) / m
            x[:, axis] = t0 + (t1 - t0) * u
            batch["chunk"] = chunk
        for cond in self.soft_conditions:
            batch[cond.name] = cond.sample(self.n_condition, generator)
        return {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in batch.items()}

    def __call__(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch["interior"].detach().requires_grad_(True)
        res_sq = self.problem.residual(x, self.solution(x)).pow(2).sum(-1)  # [N]
        parts: dict[str, float] = {}
        if self.causal is not None:
            losses = chunk_losses(res_sq, batch["chunk"], self.causal.n_chunks)
            w = causal_weights(losses, self.causal.eps)
            self.last_weights = w
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
