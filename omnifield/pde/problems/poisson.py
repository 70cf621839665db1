"""2-D Poisson ``-(u_xx + u_yy) = 2 pi^2 sin(pi x) sin(pi y)`` on the L-shaped domain [-1,1]^2 minus (0,1]^2.

The exact solution ``sin(pi x) sin(pi y)`` vanishes on all six edges (x, y in {-1, 0, 1}), so the
boundary condition is homogeneous Dirichlet on a non-rectangular, non-convex domain.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from omnifield.pde.derivatives import gradient
from omnifield.pde.problem import Dirichlet, Problem, ReferenceGrid

# Boundary edges of the L-shape as (start, end); total length 8.
_EDGES = torch.tensor(
    [
        [[-1.0, -1.0], [1.0, -1.0]],
        [[1.0, -1.0], [1.0, 0.0]],
        [[1.0, 0.0], [0.0, 0.0]],
        [[0.0, 0.0], [0.0, 1.0]],
        [[0.0, 1.0], [-1.0, 1.0]],
        [[-1.0, 1.0], [-1.0, -1.0]],
    ]
)


def in_lshape(x: torch.Tensor) -> torch.Tensor:  # [N, 2] -> [N] bool
    """True for points of the closed L-shape [-1,1]^2 minus (0,1]^2."""
    in_box = (x.abs() <= 1.0).all(-1)
    return in_box & ~((x[:, 0] > 0) & (x[:, 1] > 0))


class PoissonLShape(Problem):
    """Poisson on an L-shaped domain with an analytic solution."""

    description = "2-D Poisson on the L-shaped domain, Dirichlet (analytic)"

    def __init__(self):
        super().__init__("poisson_lshape", ("x", "y"), (-1.0, -1.0), (1.0, 1.0))
        zero = lambda x: torch.zeros_like(x[:, :1])  # noqa: E731
        self.conditions = [Dirichlet("boundary", self.sample_boundary, zero)]

    def sample_interior(self, n: int, generator: torch.Generator, quasi: bool = False) -> torch.Tensor:
        """Uniform in the L-shape: draw 2 n in the box (random or Sobol), keep those inside (3/4 of the area)."""
        out = torch.empty(0, 2)
        while out.shape[0] < n:
            x = self.box.sample(2 * n, generator, quasi)
            out = torch.cat([out, x[in_lshape(x)]])
        return out[:n]

    def sample_boundary(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Uniform by arc length on the six edges."""
        lengths = (_EDGES[:, 1] - _EDGES[:, 0]).norm(dim=-1)
        edge = torch.multinomial(lengths, n, replacement=True, generator=generator)
        s = torch.rand(n, 1, generator=generator)
        return _EDGES[edge, 0] + s * (_EDGES[edge, 1] - _EDGES[edge, 0])

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.sin(math.pi * x[:, 0]) * torch.sin(math.pi * x[:, 1]))[:, None]

    def residual(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        du = gradient(u[:, 0], x)
        lap = gradient(du[:, 0], x)[:, 0] + gradient(du[:, 1], x)[:, 1]
        return (lap + 2 * math.pi**2 * self.exact(x)[:, 0])[:, None]

    def reference(self) -> ReferenceGrid:
        axes = [np.linspace(-1.0, 1.0, 201)] * 2
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
        u = np.sin(np.pi * pts[..., 0]) * np.sin(np.pi * pts[..., 1])
        mask = in_lshape(torch.from_numpy(pts.reshape(-1, 2))).numpy().reshape(pts.shape[:2])
        return ReferenceGrid(axes=axes, values=u[..., None], mask=mask)
