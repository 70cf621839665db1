"""1-D Allen–Cahn: ``u_t - 1e-4 u_xx + 5 u^3 - 5 u = 0`` on [-1, 1] x [0, 1], ``u(x, 0) = x^2 cos(pi x)``, periodic."""

from __future__ import annotations

import math

import numpy as np
import torch

from omnifield.pde.derivatives import gradient
from omnifield.pde.problem import Dirichlet, Periodic, Problem, ReferenceGrid
from omnifield.pde.reference.spectral import allen_cahn_reference


class AllenCahn(Problem):
    """The causal-training benchmark; reference by Fourier spectral ETDRK4 (1024 modes)."""

    description = "1-D Allen-Cahn, periodic, sharp fronts (reference: spectral ETDRK4)"

    def __init__(self, diffusion: float = 1e-4, gamma: float = 5.0):
        super().__init__("allen_cahn", ("x", "t"), (-1.0, 0.0), (1.0, 1.0), time_axis=1, periodic_axes=(0,))
        self.diffusion, self.gamma = diffusion, gamma
        self.conditions = [
            Dirichlet("initial", self.box.face(1, "lo"), self.initial),
            Periodic("periodic", self.box.face(0, "lo"), axis=0, period=2.0),
        ]

    @staticmethod
    def initial(x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, 1]
        xs = x[:, :1]
        return xs * xs * torch.cos(math.pi * xs)

    def residual(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        v = u[:, 0]
        du = gradient(v, x)
        u_xx = gradient(du[:, 0], x)[:, 0]
        return (du[:, 1] - self.diffusion * u_xx + self.gamma * (v**3 - v))[:, None]

    def hard_output(self, x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """``x^2 cos(pi x) + t raw``: the initial condition holds exactly (periodicity comes from the embedding)."""
        return self.initial(x) + x[:, 1:2] * raw

    def reference(self) -> ReferenceGrid:
        sol = allen_cahn_reference(diffusion=self.diffusion, gamma=self.gamma)
        stride = sol.x.size // 256
        xs = np.append(sol.x[::stride], 1.0)
        u = sol.u[:, ::stride]
        u = np.concatenate([u, u[:, :1]], axis=1)  # periodic: u(1, t) = u(-1, t)
        return ReferenceGrid(axes=[xs, sol.t], values=u.T[..., None])
