"""Steady incompressible Navier–Stokes, Kovasznay flow (Re = 20) on [-0.5, 1] x [-0.5, 1.5].

Exact: ``u = 1 - e^{lx} cos(2 pi y)``, ``v = l/(2 pi) e^{lx} sin(2 pi y)``, ``p = (1 - e^{2lx})/2``
with ``l = Re/2 - sqrt(Re^2/4 + 4 pi^2)``. Outputs (u, v, p); velocity on all walls, pressure on the outlet.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from omnifield.pde.derivatives import gradient
from omnifield.pde.problem import Dirichlet, Problem, ReferenceGrid


class Kovasznay(Problem):
    """Kovasznay flow: momentum (x, y) and continuity residuals."""

    description = "steady Navier-Stokes, Kovasznay flow Re=20, outputs u,v,p (analytic)"

    def __init__(self, reynolds: float = 20.0):
        super().__init__("kovasznay", ("x", "y"), (-0.5, -0.5), (1.0, 1.5), n_outputs=3)
        self.reynolds = reynolds
        self.lam = reynolds / 2 - math.sqrt(reynolds**2 / 4 + 4 * math.pi**2)
        velocity = lambda x: self.exact(x)[:, :2]  # noqa: E731
        self.conditions = [
            Dirichlet(f"wall_{side}_{axis}", self.box.face(axis, side), velocity, components=(0, 1))
            for axis in (0, 1)
            for side in ("lo", "hi")
        ] + [Dirichlet("outlet_pressure", self.box.face(0, "hi"), lambda x: self.exact(x)[:, 2:], components=(2,))]

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.exp(self.lam * x[:, 0])
        y = 2 * math.pi * x[:, 1]
        u = 1 - e * torch.cos(y)
        v = self.lam / (2 * math.pi) * e * torch.sin(y)
        p = 0.5 * (1 - e * e)
        return torch.stack([u, v, p], dim=-1)

    def residual(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        u, v = out[:, 0], out[:, 1]
        du, dv, dp = gradient(u, x), gradient(v, x), gradient(out[:, 2], x)
        lap_u = gradient(du[:, 0], x)[:, 0] + gradient(du[:, 1], x)[:, 1]
        lap_v = gradient(dv[:, 0], x)[:, 0] + gradient(dv[:, 1], x)[:, 1]
        nu = 1.0 / self.reynolds
        mom_x = u * du[:, 0] + v * du[:, 1] + dp[:, 0] - nu * lap_u
        mom_y = u * dv[:, 0] + v * dv[:, 1] + dp[:, 1] - nu * lap_v
        return torch.stack([mom_x, mom_y, du[:, 0] + dv[:, 1]], dim=-1)

    def reference(self) -> ReferenceGrid:
        axes = [np.linspace(-0.5, 1.0, 151), np.linspace(-0.5, 1.5, 201)]
        pts = torch.from_numpy(np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2))
        values = self.exact(pts.double()).numpy().reshape(151, 201, 3)
        return ReferenceGrid(axes=axes, values=values)
