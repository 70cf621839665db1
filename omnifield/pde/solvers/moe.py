"""Mixture-of-experts hard constraint (after Chalapathi et al., ICLR 2024).

A basis network gives ``phi(x) [N, K]``. The domain is split into ``E`` slabs along one axis;
expert ``e`` owns the fixed constraint points ``X_e`` (initial/boundary points in its slab,
``C_e = phi(X_e) [M_e, K]``, targets ``d_e``) and a learnable weight ``w0_e [K]``. Each
forward pass every expert solves the small equality-constrained least-squares problem

    w_e = argmin |w - w0_e|^2  s.t.  C_e w = d_e      (w_e = w0_e + C_e^+ (d_e - C_e w0_e))

in float64 with the SVD-based minimum-norm least-squares solver (``torch.linalg.lstsq``, driver
``gelsd``; differentiable, and far more accurate than the normal equations for an ill-conditioned
basis), and ``u(x) = phi(x) . w_{e(x)}``.
The constraints hold exactly (to solver precision) at the constraint points whenever
``M_e <= K``; the PDE residual is trained as a soft loss. Each output component has its own
constraints and weights.
"""

from __future__ import annotations

import torch
from torch import nn

from omnifield.errors import OmnifieldError
from omnifield.pde.problem import Dirichlet, Problem


class MixtureOfExpertsConstraint(nn.Module):
    """``forward(x [N, D]) -> u [N, O]`` with the initial/boundary values imposed per expert."""

    def __init__(self, problem: Problem, basis: nn.Module, n_basis: int, n_experts: int, n_points_per_expert: int,
                 generator: torch.Generator, axis: int = 0):
        super().__init__()
        dirichlet = [c for c in problem.conditions if isinstance(c, Dirichlet)]
        if not dirichlet:
            raise OmnifieldError(f"--solver moe: problem {problem.name!r} has no Dirichlet/initial conditions to impose")
        if n_experts < 1 or n_points_per_expert < 1:
            raise OmnifieldError("--experts and --constraint-points must be >= 1")
        if n_points_per_expert > n_basis:
            raise OmnifieldError(
                f"--constraint-points ({n_points_per_expert}) must not exceed --basis ({n_basis}) for exact constraints"
            )
        self.basis, self.n_basis, self.n_experts, self.axis = basis, n_basis, n_experts, axis
        self.n_outputs = problem.n_outputs
        self.register_buffer("lo", torch.tensor(float(problem.lo[axis])))
        self.register_buffer("hi", torch.tensor(float(problem.hi[axis])))
        self.w0 = nn.Parameter(torch.zeros(n_experts, n_basis, self.n_outputs))
        # Constraint points per (expert, component): sample generously, bucket by expert, keep M each.
        self.points, self.targets = [], []
        for e in range(n_experts):
            self.points.append([])
            self.targets.append([])
        for comp in range(self.n_outputs):
            conds = [c for c in dirichlet if comp in c.components]
            pts = [c.sample(40 * n_points_per_expert * n_experts, generator) for c in conds]
            vals = [c.target(p)[:, list(c.components).index(comp)] for c, p in zip(conds, pts)]
            pts, vals = (torch.cat(pts), torch.cat(vals)) if pts else (None, None)
            for e in range(n_experts):
                if pts is None:
                    self.points[e].append(None)
                    self.targets[e].append(None)
                    continue
                mine = self.expert_of(pts) == e
                take = torch.nonzero(mine)[:, 0]
                take = take[torch.randperm(take.numel(), generator=generator)[:n_points_per_expert]]
                self.points[e].append(pts[take])
                self.targets[e].append(vals[take])

    def expert_of(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N] long
        """Index of the slab along ``axis`` that contains each point."""
        s = (x[:, self.axis] - self.lo.to(x.dtype)) / (self.hi - self.lo).to(x.dtype)
        return (s * self.n_experts).floor().long().clamp(0, self.n_experts - 1)

    def expert_weights(self) -> torch.Tensor:  # [E, K, O]
        """Solve every expert's constrained least-squares problem (float64)."""
        out = []
        for e in range(self.n_experts):
            cols = []
            for comp in range(self.n_outputs):
                w0 = self.w0[e, :, comp].double()
                pts = self.points[e][comp]
                if pts is None or pts.numel() == 0:
                    cols.append(w0)
                    continue
                c = self.basis(pts.to(self.w0.dtype)).double()  # [M, K]
                d = self.targets[e][comp].double()
                step = torch.linalg.lstsq(c, (d - c @ w0)[:, None], driver="gelsd").solution[:, 0]
                cols.append(w0 + step)
            out.append(torch.stack(cols, dim=-1))
        return torch.stack(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phi = self.basis(x)  # [N, K]
        w = self.expert_weights().to(phi.dtype)[self.expert_of(x)]  # [N, K, O]
        return torch.einsum("nk,nko->no", phi, w)
