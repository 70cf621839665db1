"""1-D viscous Burgers: ``u_t + u u_x = (0.01/pi) u_xx`` on [-1, 1] x [0, 1], ``u(x, 0) = -sin(pi x)``, u(±1, t) = 0."""

from __future__ import annotations

import math

import numpy as np
import torch

from omnifield.pde.derivatives import gradient
from omnifield.pde.problem import Dirichlet, Problem, ReferenceGrid
from omnifield.pde.reference.spectral import burgers_reference


class Burgers(Problem):
    """The standard PINN benchmark; reference by Fourier spectral ETDRK4 (2048 modes)."""

    description = "1-D viscous Burgers, nu = 0.01/pi, shock at x = 0 (reference: spectral ETDRK4)"

    def __init__(self, nu: float = 0.01 / math.pi):
        super().__init__("burgers", ("x", "t"), (-1.0, 0.0), (1.0, 1.0), time_axis=1)
        self.nu = nu
        zero = lambda x: torch.zeros_like(x[:, :1])  # noqa: E731
        self.conditions = [
            Dirichlet("initial", self.box.face(1, "lo"), lambda x: -torch.sin(math.pi * x[:, :1])),
            Dirichlet("left", self.box.face(0, "lo"), zero),
            Dirichlet("right", self.box.face(0, "hi"), zero),
        ]

    def residual(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        du = gradient(u[:, 0], x)
        u_xx = gradient(du[:, 0], x)[:, 0]
        return (du[:, 1] + u[:, 0] * du[:, 0] - self.nu * u_xx)[:, None]

    def hard_output(self, x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """``-sin(pi x) + t (1 - x^2) raw``: the initial and boundary values hold exactly."""
        xs, t = x[:, :1], x[:, 1:2]
        return -torch.sin(math.pi * xs) + t * (1.0 - xs * xs) * raw

    def reference(self) -> ReferenceGrid:
        sol = burgers_reference(nu=self.nu)
        stride = sol.x.size // 256
        xs = np.append(sol.x[::stride], 1.0)
        u = sol.u[:, ::stride]
        u = np.concatenate([u, -u[:, :1]], axis=1)  # u(1, t) = u(-1, t) = 0 by symmetry
        return ReferenceGrid(axes=[xs, sol.t], values=u.T[..., None])
