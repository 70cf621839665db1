"""A 2-D Neo-Hookean cantilever falling under gravity, stepped by minimising the incremental potential.

Rest shape ``[0, L] x [0, H]`` clamped at ``x = 0``. The field ``u`` gives the
deformation ``phi(X) = X + (X_0 / L) * u(X)``, so the clamp holds exactly.
Each step minimises the implicit-Euler incremental potential (a Monte Carlo
estimate over the body, ``area * mean``)::

    E[phi] = int rho / (2 dt^2) |phi - (2 phi_n - phi_{n-1})|^2 + Psi(grad phi) + rho g (phi_y - X_y) dX

with the same Neo-Hookean ``Psi`` as the finite-element reference
(:mod:`omnifield.pde.reference.fem_elasticity`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnifield.config import register_config
from omnifield.pde.insr.field import SpatialFieldConfig
from omnifield.pde.insr.problem import InsrProblem, Stage
from omnifield.pde.insr.rules import spatial_gradient
from omnifield.pde.reference.fem_elasticity import lame_parameters, neo_hookean_energy_density


@register_config("insr_elasticity")
@dataclass
class ElasticityProblem(InsrProblem):
    """Beam ``length x height`` of ``density``, ``youngs`` modulus and ``poisson`` ratio under ``gravity``."""

    length: float = 2.0
    height: float = 0.5
    density: float = 1.0
    youngs: float = 5000.0
    poisson: float = 0.3
    gravity: float = 9.8
    dt: float = 0.02
    n_steps: int = 20

    dim = 2
    n_history = 2
    rules = ("implicit_euler",)

    @property
    def box(self) -> tuple:
        return (0.0, 0.0, self.length, self.height)

    def field_configs(self, decoder) -> dict[str, SpatialFieldConfig]:
        return {"u": SpatialFieldConfig(n_in=2, n_out=2, box=self.box, decoder=decoder)}

    def initial_value(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    def stages(self) -> list[Stage]:
        return [Stage("incremental_potential", "u", self._potential)]

    def displacement(self, field, x: torch.Tensor) -> torch.Tensor:
        """``phi(X) - X`` with the clamp built in.  x [N, 2] -> [N, 2]"""
        return (x[:, :1] / self.length) * field(x)

    def _potential(self, field, ctx, x):
        u = self.displacement(field, x)
        previous = ctx.history[1] if len(ctx.history) > 1 else ctx.history[0]
        with torch.no_grad():
            inertial = 2.0 * self.displacement(ctx.history[0]["u"], x) - self.displacement(previous["u"], x)
        F = torch.eye(2, dtype=x.dtype) + spatial_gradient(u, x)
        mu, lam = lame_parameters(self.youngs, self.poisson)
        density = (
            self.density / (2.0 * ctx.dt**2) * (u - inertial).pow(2).sum(-1)
            + neo_hookean_energy_density(F, mu, lam)
            + self.density * self.gravity * u[:, 1]
        )
        return self.length * self.height * density.mean()

    def solution(self, fields, x: torch.Tensor) -> torch.Tensor:
        return self.displacement(fields["u"], x)
