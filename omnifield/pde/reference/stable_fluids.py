"""Stable fluids (Stam 1999) on a periodic square: the classical grid solver for the Taylor-Green vortex.

State: velocity ``[2, n, n]`` at nodes ``x_i = i h``, ``h = L / n`` (``2 n^2``
floats). One step, by the same operator splitting as the neural solver:

1. advection: semi-Lagrangian, second-order (midpoint) back-trace, periodic
   cubic-spline interpolation (``scipy.ndimage.map_coordinates``, ``grid-wrap``);
2. viscosity: implicit, exact in Fourier space ``u_k / (1 + nu dt |k|^2)``;
3. projection: remove the gradient part in Fourier space ``u_k - k (k . u_k) / |k|^2``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def grid_points(n: int, length: float) -> np.ndarray:
    """Node coordinates ``[2, n, n]`` (``x`` varies along axis 1, ``y`` along axis 2)."""
    s = np.arange(n) * (length / n)
    return np.stack(np.meshgrid(s, s, indexing="ij"))


class StableFluids:
    """Periodic ``n x n`` grid of side ``length``; ``order`` of the interpolating spline (1 or 3)."""

    def __init__(self, n: int, length: float, viscosity: float = 0.0, order: int = 3):
        if n < 4:
            raise ValueError("stable fluids needs n >= 4")
        self.n, self.length, self.viscosity, self.order = n, length, viscosity, order
        self.h = length / n
        k = 2.0 * np.pi * np.fft.fftfreq(n, d=self.h)
        self.k = np.stack(np.meshgrid(k, k, indexing="ij"))  # [2, n, n]
        self.k2 = (self.k**2).sum(0)
        self.index = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij")).astype(np.float64)

    def _sample(self, field: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Interpolate each channel of ``field [C, n, n]`` at fractional indices ``[2, n, n]``."""
        return np.stack([ndimage.map_coordinates(c, index, order=self.order, mode="grid-wrap") for c in field])

    def advect(self, u: np.ndarray, dt: float) -> np.ndarray:
        """Semi-Lagrangian transport of ``u [2, n, n]`` by itself with a midpoint back-trace."""
        mid = self.index - 0.5 * dt * u / self.h
        back = self.index - dt * self._sample(u, mid) / self.h
        return self._sample(u, back)

    def diffuse_and_project(self, u: np.ndarray, dt: float) -> np.ndarray:
        """Implicit viscosity then the divergence-free projection, both in Fourier space."""
        uk = np.fft.fft2(u, axes=(1, 2)) / (1.0 + self.viscosity * dt * self.k2)
        k_dot_u = (self.k * uk).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            uk = uk - self.k * np.where(self.k2 > 0, k_dot_u / self.k2, 0.0)
        return np.fft.ifft2(uk, axes=(1, 2)).real

    def simulate(self, u0: np.ndarray, dt: float, n_steps: int) -> np.ndarray:
        """All states from ``u0 [2, n, n]``.  -> [n_steps + 1, 2, n, n]"""
        out = [np.asarray(u0, dtype=np.float64)]
        for _ in range(n_steps):
            out.append(self.diffuse_and_project(self.advect(out[-1], dt), dt))
        return np.stack(out)
