"""2-D heat ``u_t = alpha (u_xx + u_yy)`` on [0,1]^2 x [0,1], u = 0 on the walls,
``u(x, y, 0) = sin(pi x) sin(2 pi y)``; exact ``exp(-5 pi^2 alpha t) u(x, y, 0)``."""

from __future__ import annotations

import math

import numpy as np
import torch

from omnifield.pde.derivatives import gradient
from omnifield.pde.problem import Dirichlet, Problem, ReferenceGrid


class Heat2D(Problem):
    """Heat equation in a unit square (space-time field, analytic)."""

    description = "2-D heat equation, Dirichlet walls (analytic)"

    def __init__(self, alpha: float = 0.02):
        super().__init__("heat", ("x", "y", "t"), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), time_axis=2)
        self.alpha = alpha
        zero = lambda x: torch.zeros_like(x[:, :1])  # noqa: E731
        self.conditions = [Dirichlet("initial", self.box.face(2, "lo"), self.initial)] + [
            Dirichlet(f"{side}_{axis}", self.box.face(axis, side), zero) for axis in (0, 1) for side in ("lo", "hi")
        ]

    @staticmethod
    def initial(x: torch.Tensor) -> torch.Tensor:  # [N, 3] -> [N, 1]
        return (torch.sin(math.pi * x[:, 0]) * torch.sin(2 * math.pi * x[:, 1]))[:, None]

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-5 * math.pi**2 * self.alpha * x[:, 2:3]) * self.initial(x)

    def residual(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        du = gradient(u[:, 0], x)
        lap = gradient(du[:, 0], x)[:, 0] + gradient(du[:, 1], x)[:, 1]
        return (du[:, 2] - self.alpha * lap)[:, None]

    def hard_output(self, x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """``u0 + t x(1-x) y(1-y) raw``: initial and wall values hold exactly."""
        xs, ys, t = x[:, :1], x[:, 1:2], x[:, 2:3]
        return self.initial(x) + t * xs * (1 - xs) * ys * (1 - ys) * raw

    def reference(self) -> ReferenceGrid:
        axes = [np.linspace(0.0, 1.0, 51), np.linspace(0.0, 1.0, 51), np.linspace(0.0, 1.0, 11)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
        u = np.exp(-5 * np.pi**2 * self.alpha * pts[..., 2]) * np.sin(np.pi * pts[..., 0]) * np.sin(2 * np.pi * pts[..., 1])
        return ReferenceGrid(axes=axes, values=u[..., None])
