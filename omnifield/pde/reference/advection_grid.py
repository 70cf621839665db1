"""Grid solvers of 1-D constant-speed advection ``u_t + a u_x = 0`` with zero inflow.

Both store ``n`` cell-centre values on ``[lo, hi]`` (the memory of the state is
``n`` floats) and return every step, ``[n_steps + 1, n]``:

- :func:`upwind_advection`: first-order upwind finite volumes, explicit, sub-cycled
  so that each sub-step has Courant number ``|a| dt / dx <= 1`` (exact shift at 1).
- :func:`semi_lagrangian_advection`: trace each centre back by ``a dt`` and
  interpolate (spline of ``order`` 1 or 3, zero outside), any time step.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def cell_centres(n: int, lo: float, hi: float) -> np.ndarray:
    """Centres of ``n`` equal cells of ``[lo, hi]``.  -> [n]"""
    dx = (hi - lo) / n
    return lo + dx * (np.arange(n) + 0.5)


def upwind_advection(u0: np.ndarray, speed: float, dx: float, dt: float, n_steps: int) -> np.ndarray:
    """Explicit upwind, ``ceil(|a| dt / dx)`` sub-steps per step.  u0 [n] -> [n_steps + 1, n]"""
    n_sub = max(1, math.ceil(abs(speed) * dt / dx - 1e-12))
    courant = speed * dt / n_sub / dx
    out = np.empty((n_steps + 1, u0.size), dtype=np.float64)
    u = out[0] = np.asarray(u0, dtype=np.float64)
    for step in range(n_steps):
        for _ in range(n_sub):
            padded = np.concatenate([[0.0], u, [0.0]])
            if courant >= 0:
                u = u - courant * (padded[1:-1] - padded[:-2])
            else:
                u = u - courant * (padded[2:] - padded[1:-1])
        out[step + 1] = u
    return out


def semi_lagrangian_advection(
    u0: np.ndarray, speed: float, dx: float, dt: float, n_steps: int, order: int = 3
) -> np.ndarray:
    """Back-trace ``x - a dt`` and interpolate with a spline of ``order``.  u0 [n] -> [n_steps + 1, n]"""
    out = np.empty((n_steps + 1, u0.size), dtype=np.float64)
    out[0] = u0
    source = np.arange(u0.size) - speed * dt / dx  # back-traced positions in index units
    for step in range(n_steps):
        out[step + 1] = ndimage.map_coordinates(out[step], source[None], order=order, mode="constant", cval=0.0)
    return out
