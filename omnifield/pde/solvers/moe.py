"""Mixture-of-experts hard constraint (after Chalapathi et al., ICLR 2024).

A basis network gives ``phi(x) [N, K]``. The domain is covered by ``E`` overlapping windows along one
axis: expert ``e`` has a smooth weight ``g_e(x)`` (compactly supported, ``sum_e g_e = 1``, twice
continuously differentiable, so the blended solution has a Laplacian everywhere) and a learnable
``w0_e [K]``, and ``u(x) = sum_e g_e(x) phi(x) . w_e``. Because the windows overlap, the PDE
residual couples neighbouring experts: with hard routing (one slab per expert) the values on the
slab interfaces are free and the residual alone does not determine the solution.

One set of initial/boundary points is spread evenly (greedy farthest-point order) and every expert
takes the points inside its window (``C_e = phi(X_e) [M_e, K]``, targets ``d_e``), at most ``M`` of
them. Each forward pass every expert solves

    w_e = argmin |w - w0_e|^2  s.t.  C_e w = d_e

in float64 as the damped least-squares problem ``min |C_e s - r|^2 + lam |s|^2`` with ``r = d_e - C_e
w0_e``, ``w_e = w0_e + s`` and ``sqrt(lam) = rtol |C_e|_F`` (stacked ``[C_e; sqrt(lam) I]``, full column
rank, ``torch.linalg.lstsq``). ``rtol`` defaults to the square root of the basis precision (3.5e-4 in
float32; 1e-6 gave 0.33 instead of 4.4e-3 on poisson_lshape: the gradients are ill-conditioned again). The damping matters:
a smooth basis restricted to the boundary has rapidly decaying singular values (1e-5 by the 10th and
1e-10 by the 20th for a fresh tanh MLP); an undamped solve fits the rounding noise of those
directions, removes everything the basis can represent from ``w0_e`` (the expert's output collapses
to zero) and back-propagates with gains of ``1 / sigma_min``. With damping the constraints hold to
``~rtol`` relative precision at the points (a point where several windows overlap is a constraint of
each of those experts, so the blend holds it too), and the gradients stay bounded.

The basis must be able to span ``K`` functions: a tanh MLP whose last linear layer maps ``width``
features to ``K`` outputs spans at most ``width + 1``.
"""

from __future__ import annotations

import torch
from torch import nn

from omnifield.errors import OmnifieldError
from omnifield.pde.problem import Dirichlet, Problem


def farthest_point_order(points: torch.Tensor, n: int) -> torch.Tensor:  # [P, D] -> [min(n, P)] long
    """Greedy farthest-point order of ``points``: each next point is the farthest from those chosen."""
    n = min(n, points.shape[0])
    order = torch.zeros(n, dtype=torch.long)
    dist = (points - points[0]).norm(dim=-1)
    for i in range(1, n):
        order[i] = dist.argmax()
        dist = torch.minimum(dist, (points - points[order[i]]).norm(dim=-1))
    return order


class MixtureOfExpertsConstraint(nn.Module):
    """``forward(x [N, D]) -> u [N, O]`` with the initial/boundary values imposed by every expert."""

    def __init__(self, problem: Problem, basis: nn.Module, n_basis: int, n_experts: int, n_points_per_expert: int,
                 generator: torch.Generator, axis: int = 0, rtol: float | None = None):
        super().__init__()
        dirichlet = [c for c in problem.conditions if isinstance(c, Dirichlet)]
        if not dirichlet:
            raise OmnifieldError(f"--solver moe: problem {problem.name!r} has no Dirichlet/initial conditions to impose")
        if n_experts < 1 or n_points_per_expert < 1:
            raise OmnifieldError("--experts and --constraint-points must be >= 1")
        if n_points_per_expert >= n_basis:
            raise OmnifieldError(
                f"--constraint-points ({n_points_per_expert}) must be below --basis ({n_basis}): "
                "the basis needs free directions beyond the constraints"
            )
        linears = [m for m in basis.modules() if isinstance(m, nn.Linear)]
        if linears and linears[-1].out_features == n_basis and linears[-1].in_features + 1 < n_basis:
            raise OmnifieldError(
                f"--basis ({n_basis}) exceeds what the basis network spans (--width {linears[-1].in_features} + 1): "
                "raise --width or lower --basis"
            )
        self.basis, self.n_basis, self.n_experts, self.axis, self.rtol = basis, n_basis, n_experts, axis, rtol
        self.n_outputs = problem.n_outputs
        self.register_buffer("lo", torch.tensor(float(problem.lo[axis])))
        self.register_buffer("hi", torch.tensor(float(problem.hi[axis])))
        self.w0 = nn.Parameter(torch.randn(n_experts, n_basis, self.n_outputs, generator=generator) / n_basis**0.5)
        # Per component: an evenly spread prefix of the farthest-point order of a dense sample, as long as no
        # expert gets more than M points; expert e keeps the ones inside its window.
        self.points = [[] for _ in range(n_experts)]
        self.targets = [[] for _ in range(n_experts)]
        for comp in range(self.n_outputs):
            conds = [c for c in dirichlet if comp in c.components]
            if not conds:
                for e in range(n_experts):
                    self.points[e].append(None)
                    self.targets[e].append(None)
                continue
            pts = [c.sample(40 * n_points_per_expert * n_experts, generator) for c in conds]
            vals = torch.cat([c.target(p)[:, list(c.components).index(comp)] for c, p in zip(conds, pts)])
            pts = torch.cat(pts)
            order = farthest_point_order(pts, n_points_per_expert * n_experts)
            inside = self.windows(pts[order].double()) > 0  # [L, E]; float64: points on a window's edge stay out
            keep = int((inside.long().cumsum(0) <= n_points_per_expert).all(-1).sum())
            chosen, inside = order[:keep], inside[:keep]
            for e in range(n_experts):
                self.points[e].append(pts[chosen[inside[:, e]]])
                self.targets[e].append(vals[chosen[inside[:, e]]])

    def windows(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, E]
        """Unnormalised windows ``(1 - t^2)^3`` (``t``: distance to the expert's centre over one slab width
        along ``axis``); neighbours overlap by a slab, so their sum is at least 0.42 everywhere."""
        s = (x[:, self.axis] - self.lo.to(x.dtype)) / (self.hi - self.lo).to(x.dtype)
        centres = (torch.arange(self.n_experts, dtype=x.dtype, device=x.device) + 0.5) / self.n_experts
        t = (s[:, None] - centres) * self.n_experts
        return (1.0 - t * t).clamp(min=0.0) ** 3

    def gates(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, E]
        """Partition of unity ``g_e(x)``: the windows over their sum."""
        w = self.windows(x)
        return w / w.sum(-1, keepdim=True)

    def expert_weights(self) -> torch.Tensor:  # [E, K, O]
        """Solve every expert's damped constrained least-squares problem (float64)."""
        out = []
        for e in range(self.n_experts):
            cols = []
            for comp in range(self.n_outputs):
                w0 = self.w0[e, :, comp].double()
                pts = self.points[e][comp]
                if pts is None or pts.numel() == 0:
                    cols.append(w0)
                    continue
                phi = self.basis(pts.to(self.w0.dtype))
                rtol = self.rtol if self.rtol is not None else torch.finfo(phi.dtype).eps ** 0.5
                c = phi.double()  # [M, K]
                damping = rtol * c.detach().norm()
                a = torch.cat([c, damping * torch.eye(self.n_basis, dtype=c.dtype, device=c.device)])
                r = torch.cat([self.targets[e][comp].double() - c @ w0, c.new_zeros(self.n_basis)])
                cols.append(w0 + torch.linalg.lstsq(a, r[:, None]).solution[:, 0])
            out.append(torch.stack(cols, dim=-1))
        return torch.stack(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phi = self.basis(x)  # [N, K]
        w = torch.einsum("ne,eko->nko", self.gates(x), self.expert_weights().to(phi.dtype))  # [N, K, O]
        return torch.einsum("nk,nko->no", phi, w)
