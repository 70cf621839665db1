"""References for each INSR problem, evaluated at shared points: exact solutions and classical solvers.

Grid solvers get the same memory as the neural state where that is meaningful
(advection: ``n`` cells = number of network floats; Taylor-Green: ``2 n^2``
velocity floats = number of network floats). The elasticity reference is a
finite-element run of the same beam (its memory is reported, not matched).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from omnifield.pde.insr.advection import AdvectionProblem
from omnifield.pde.insr.elasticity import ElasticityProblem
from omnifield.pde.insr.problem import InsrProblem
from omnifield.pde.insr.taylor_green import TaylorGreenProblem
from omnifield.pde.reference.advection_grid import cell_centres, semi_lagrangian_advection, upwind_advection
from omnifield.pde.reference.fem_elasticity import NeoHookeanCantilever
from omnifield.pde.reference.stable_fluids import StableFluids, grid_points


@dataclass
class Comparison:
    """Evaluation ``points [M, D]``; ``solutions[name]`` is ``[n_steps + 1, M, C]``; errors are against ``truth``."""

    points: torch.Tensor
    solutions: dict[str, np.ndarray]
    truth: str
    state_bytes: dict[str, int] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)


def relative_l2(estimate: np.ndarray, truth: np.ndarray) -> float:
    """``||estimate - truth|| / ||truth||`` (absolute error where ``truth`` is zero)."""
    scale = float(np.linalg.norm(truth))
    err = float(np.linalg.norm(estimate - truth))
    return err / scale if scale > 0 else err


def compare(problem: InsrProblem, state_floats: int, n_steps: int) -> Comparison:
    """References for ``n_steps`` steps of ``problem``, grid sizes matched to ``state_floats``."""
    if isinstance(problem, AdvectionProblem):
        return _advection(problem, state_floats, n_steps)
    if isinstance(problem, TaylorGreenProblem):
        return _taylor_green(problem, state_floats, n_steps)
    if isinstance(problem, ElasticityProblem):
        return _elasticity(problem, n_steps)
    raise TypeError(f"no reference for {type(problem).__name__}")


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _advection(problem: AdvectionProblem, state_floats: int, n_steps: int) -> Comparison:
    lo, hi = problem.box
    x = torch.linspace(lo, hi, 801, dtype=torch.float64)[:, None]
    times = problem.dt * np.arange(n_steps + 1)
    exact = np.stack([problem.exact(t, x).numpy() for t in times])
    cells = cell_centres(state_floats, lo, hi)
    u0 = problem.pulse(torch.tensor(cells)[:, None])[:, 0].numpy()
    dx = (hi - lo) / state_floats
    solutions, walls = {"exact": exact}, {}
    for name, solver in (("upwind", upwind_advection), ("semi_lagrangian", semi_lagrangian_advection)):
        hist, walls[name] = _timed(solver, u0, problem.speed, dx, problem.dt, n_steps)
        solutions[name] = np.stack([np.interp(x[:, 0].numpy(), cells, h) for h in hist])[:, :, None]
    bytes_ = {"upwind": 4 * state_floats, "semi_lagrangian": 4 * state_floats}
    return Comparison(x.float(), solutions, "exact", bytes_, walls)


def _taylor_green(problem: TaylorGreenProblem, state_floats: int, n_steps: int) -> Comparison:
    n = max(4, int(math.sqrt(state_floats / 2)))
    length = problem.box[2] - problem.box[0]
    nodes = grid_points(n, length)  # [2, n, n]
    points = torch.tensor(nodes.reshape(2, -1).T)
    times = problem.dt * np.arange(n_steps + 1)
    exact = np.stack([problem.exact(t, points).numpy() for t in times])
    solver = StableFluids(n, length, problem.viscosity)
    u0 = exact[0].T.reshape(2, n, n)
    hist, wall = _timed(solver.simulate, u0, problem.dt, n_steps)
    grid = hist.reshape(n_steps + 1, 2, -1).transpose(0, 2, 1)
    return Comparison(points.float(), {"exact": exact, "stable_fluids": grid}, "exact", {"stable_fluids": 4 * 2 * n * n}, {"stable_fluids": wall})


def _elasticity(problem: ElasticityProblem, n_steps: int, nx: int = 41, ny: int = 11) -> Comparison:
    fem = NeoHookeanCantilever(
        problem.length, problem.height, problem.density, problem.youngs, problem.poisson, problem.gravity, nx, ny
    )
    hist, wall = _timed(fem.simulate, problem.dt, n_steps)
    # two position arrays (x_n, x_{n-1}) of float64 are the FEM state
    return Comparison(fem.rest.float(), {"fem": hist}, "fem", {"fem": 2 * 8 * hist[0].size}, {"fem": wall})
