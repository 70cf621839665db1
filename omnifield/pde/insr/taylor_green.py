"""2-D Taylor-Green vortex by operator splitting (advection, pressure solve, projection) on a periodic box.

Domain ``[0, 2 pi]^2``, velocity ``u = (sin x cos y, -cos x sin y) exp(-2 nu t)``
(exact for the incompressible Navier-Stokes equations; ``nu = 0`` is the
inviscid, steady case the paper runs). Both unknowns are periodic fields.
Each step has three stages (Chen et al. 2023, Sec. 5.2):

1. ``advect`` (velocity):  ``u*(x) - nu dt Lap u*(x) = u_n(x_back)`` with the
   semi-Lagrangian back-trace ``x_back = x - dt u_n(x)`` (``implicit_euler``) or
   the two-stage midpoint trace ``x - dt u_n(x - dt/2 u_n(x))`` (``midpoint``);
2. ``pressure``: ``Lap p = div u*``;
3. ``project`` (velocity): ``u_{n+1} = u* - grad p``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from omnifield.config import register_config
from omnifield.pde.insr.field import SpatialFieldConfig
from omnifield.pde.insr.problem import InsrProblem, Stage
from omnifield.pde.insr.rules import spatial_gradient

TWO_PI = 2.0 * math.pi


def taylor_green_velocity(x: torch.Tensor, t: float, viscosity: float) -> torch.Tensor:
    """Exact velocity.  x [N, 2] -> [N, 2]"""
    decay = math.exp(-2.0 * viscosity * t)
    sx, cx = torch.sin(x[:, 0]), torch.cos(x[:, 0])
    sy, cy = torch.sin(x[:, 1]), torch.cos(x[:, 1])
    return decay * torch.stack([sx * cy, -cx * sy], dim=-1)


def divergence(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_i d v_i / d x_i``.  v [N, D], x [N, D] -> [N]"""
    return torch.diagonal(spatial_gradient(v, x), dim1=1, dim2=2).sum(-1)


def laplacian(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Laplacian of every channel.  v [N, C], x [N, D] -> [N, C]"""
    grads = spatial_gradient(v, x)  # [N, C, D]
    return torch.stack([divergence(grads[:, c], x) for c in range(v.shape[1])], dim=-1)


@register_config("insr_taylor_green")
@dataclass
class TaylorGreenProblem(InsrProblem):
    """Taylor-Green vortex with kinematic ``viscosity`` (0: inviscid), ``n_steps`` of ``dt``."""

    viscosity: float = 0.0
    dt: float = 0.1
    n_steps: int = 10
    box: tuple = (0.0, 0.0, TWO_PI, TWO_PI)

    dim = 2

    def field_configs(self, decoder) -> dict[str, SpatialFieldConfig]:
        return {
            "u": SpatialFieldConfig(n_in=2, n_out=2, box=self.box, periodic=True, decoder=decoder),
            "p": SpatialFieldConfig(n_in=2, n_out=1, box=self.box, periodic=True, decoder=decoder),
        }

    def initial_value(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == "u":
            return taylor_green_velocity(x, 0.0, self.viscosity)
        return torch.zeros(x.shape[0], 1, dtype=x.dtype)

    def stages(self) -> list[Stage]:
        return [
            Stage("advect", "u", self._advect_loss),
            Stage("pressure", "p", self._pressure_loss),
            Stage("project", "u", self._project_loss),
        ]

    def back_trace(self, velocity, x: torch.Tensor, dt: float, rule: str) -> torch.Tensor:
        """Departure points of the semi-Lagrangian step.  x [N, 2] -> [N, 2]"""
        if rule == "midpoint":
            return x - dt * velocity(x - 0.5 * dt * velocity(x))
        return x - dt * velocity(x)

    def _advect_loss(self, field, ctx, x):
        u_prev = ctx.history[0]["u"]
        with torch.no_grad():
            target = u_prev(self.back_trace(u_prev, x.detach(), ctx.dt, ctx.rule))
        u = field(x)
        if self.viscosity > 0.0:
            u = u - self.viscosity * ctx.dt * laplacian(u, x)
        return (u - target).pow(2).sum(-1).mean()

    def _pressure_loss(self, field, ctx, x):
        div_u = divergence(ctx.snapshot["u"](x), x)
        lap_p = laplacian(field(x), x)[:, 0]
        return (lap_p - div_u.detach()).pow(2).mean()

    def _project_loss(self, field, ctx, x):
        grad_p = spatial_gradient(ctx.snapshot["p"](x), x)[:, 0]
        target = (ctx.snapshot["u"](x) - grad_p).detach()
        return (field(x) - target).pow(2).sum(-1).mean()

    def solution(self, fields, x: torch.Tensor) -> torch.Tensor:
        return fields["u"](x)

    def exact(self, t: float, x: torch.Tensor) -> torch.Tensor:
        return taylor_green_velocity(x, t, self.viscosity)
