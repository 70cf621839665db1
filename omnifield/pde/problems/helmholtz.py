"""2-D Helmholtz ``u_xx + u_yy + k^2 u = q`` on [-1, 1]^2, u = 0 on the boundary; exact ``sin(a1 pi x) sin(a2 pi y)``."""

from __future__ import annotations

import math

import numpy as np
import torch

from omnifield.pde.derivatives import gradient
from omnifield.pde.problem import Dirichlet, Problem, ReferenceGrid


class Helmholtz2D(Problem):
    """Helmholtz with ``a1 = 1, a2 = 4, k = 1`` (the PIG / PIXEL benchmark)."""

    description = "2-D Helmholtz, a1=1, a2=4, k=1, Dirichlet (analytic)"

    def __init__(self, a1: float = 1.0, a2: float = 4.0, k: float = 1.0):
        super().__init__("helmholtz", ("x", "y"), (-1.0, -1.0), (1.0, 1.0))
        self.a1, self.a2, self.k = a1, a2, k
        zero = lambda x: torch.zeros_like(x[:, :1])  # noqa: E731
        self.conditions = [
            Dirichlet(f"{side}_{axis}", self.box.face(axis, side), zero) for axis in (0, 1) for side in ("lo", "hi")
        ]

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.sin(self.a1 * math.pi * x[:, 0]) * torch.sin(self.a2 * math.pi * x[:, 1]))[:, None]

    def source(self, x: torch.Tensor) -> torch.Tensor:  # [N]
        scale = self.k**2 - (self.a1 * math.pi) ** 2 - (self.a2 * math.pi) ** 2
        return scale * self.exact(x)[:, 0]

    def residual(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        du = gradient(u[:, 0], x)
        lap = gradient(du[:, 0], x)[:, 0] + gradient(du[:, 1], x)[:, 1]
        return (lap + self.k**2 * u[:, 0] - self.source(x))[:, None]

    def hard_output(self, x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """``(1 - x^2)(1 - y^2) raw``: zero on the boundary exactly."""
        return (1.0 - x[:, :1] ** 2) * (1.0 - x[:, 1:2] ** 2) * raw

    def reference(self) -> ReferenceGrid:
        axes = [np.linspace(-1.0, 1.0, 201)] * 2
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
        u = np.sin(self.a1 * np.pi * pts[..., 0]) * np.sin(self.a2 * np.pi * pts[..., 1])
        return ReferenceGrid(axes=axes, values=u[..., None])
