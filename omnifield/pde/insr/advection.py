"""1-D advection of a Gaussian pulse: ``u_t + a u_x = 0`` on ``[-1, 1]``, exact ``u(x, t) = u0(x - a t)``.

One stage per step: the rule residual ``u_new - u_old + dt a d/dx u_rule``
(midpoint or implicit Euler, see :mod:`omnifield.pde.insr.rules`) is driven to
zero in mean square at uniform samples, plus the inflow condition ``u = 0`` at
the upstream end (without it the rule leaves a free mode
``exp(-2 (x - lo) / (a dt))`` growing in from the inflow boundary).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnifield.config import register_config
from omnifield.pde.insr.field import SpatialFieldConfig
from omnifield.pde.insr.problem import InsrProblem, Stage
from omnifield.pde.insr.rules import spatial_gradient, step_residual


@register_config("insr_advection")
@dataclass
class AdvectionProblem(InsrProblem):
    """Pulse ``exp(-(x - center)^2 / (2 width^2))`` moving at ``speed`` for ``n_steps`` steps of ``dt``."""

    speed: float = 0.25
    center: float = -0.5
    width: float = 0.1
    dt: float = 0.05
    n_steps: int = 40
    box: tuple = (-1.0, 1.0)

    dim = 1

    def field_configs(self, decoder) -> dict[str, SpatialFieldConfig]:
        return {"u": SpatialFieldConfig(n_in=1, n_out=1, box=self.box, decoder=decoder)}

    def pulse(self, x: torch.Tensor) -> torch.Tensor:
        """The initial pulse.  x [N, 1] -> [N, 1]"""
        return torch.exp(-((x - self.center) ** 2) / (2.0 * self.width**2))

    def initial_value(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.pulse(x)

    def stages(self) -> list[Stage]:
        return [Stage("advect", "u", self._advect_loss)]

    def _advect_loss(self, field, ctx, x):
        def rhs(u):
            return -self.speed * spatial_gradient(u, x)[:, :, 0]

        residual = step_residual(ctx.rule, field(x), ctx.history[0]["u"](x), rhs, ctx.dt)
        inflow = torch.tensor([[self.box[0] if self.speed >= 0 else self.box[1]]], dtype=x.dtype)
        return residual.pow(2).mean() + field(inflow).pow(2).sum()

    def solution(self, fields, x: torch.Tensor) -> torch.Tensor:
        return fields["u"](x)

    def exact(self, t: float, x: torch.Tensor) -> torch.Tensor:
        return self.pulse(x - self.speed * t)
