"""Fourier spectral solver with ETDRK4 time stepping for 1-D periodic PDEs ``u_t = L u + N(u)``.

``L`` is diagonal in Fourier space (``-nu k^2 + c``); ``N`` is evaluated
pseudo-spectrally with 2/3-rule dealiasing. ETDRK4 follows Cox & Matthews
(2002) with the contour-integral coefficients of Kassam & Trefethen (2005).
Used for the viscous Burgers and Allen–Cahn references on ``x in [-1, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class SpectralSolution:
    """Solution snapshots: ``u[i, j] = u(x[j], t[i])``."""

    x: np.ndarray  # [Nx]
    t: np.ndarray  # [Nt]
    u: np.ndarray  # [Nt, Nx]


def _etdrk4_coefficients(lin: np.ndarray, dt: float, n_contour: int = 32):
    """Kassam–Trefethen coefficients ``E, E2, Q, f1, f2, f3`` for diagonal linear part ``lin`` [K]."""
    roots = np.exp(1j * np.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)
    lr = dt * lin[:, None] + roots[None, :]
    q = dt * np.real(np.mean((np.exp(lr / 2) - 1) / lr, axis=1))
    f1 = dt * np.real(np.mean((-4 - lr + np.exp(lr) * (4 - 3 * lr + lr**2)) / lr**3, axis=1))
    f2 = dt * np.real(np.mean((2 + lr + np.exp(lr) * (-2 + lr)) / lr**3, axis=1))
    f3 = dt * np.real(np.mean((-4 - 3 * lr - lr**2 + np.exp(lr) * (4 - lr)) / lr**3, axis=1))
    return np.exp(dt * lin), np.exp(dt * lin / 2), q, f1, f2, f3


def solve_periodic_etdrk4(
    u0: Callable[[np.ndarray], np.ndarray],
    nonlinear: Callable[[np.ndarray, np.ndarray], np.ndarray],
    diffusion: float,
    reaction: float,
    n_modes: int,
    dt: float,
    t_out: np.ndarray,
    length: float = 2.0,
    x0: float = -1.0,
) -> SpectralSolution:
    """Integrate ``u_t = diffusion u_xx + reaction u + N(u)`` on a periodic interval.

    ``nonlinear(u_hat [K], k [K]) -> N_hat [K]`` works on rfft coefficients (dealiased input).
    ``t_out`` must be multiples of ``dt`` (rounded); the grid is ``x0 + length * j / n_modes``.
    """
    x = x0 + length * np.arange(n_modes) / n_modes
    k = 2 * np.pi / length * np.fft.rfftfreq(n_modes, d=1.0 / n_modes)
    dealias = np.abs(np.fft.rfftfreq(n_modes, d=1.0 / n_modes)) < n_modes / 3
    lin = -diffusion * k**2 + reaction
    e, e2, q, f1, f2, f3 = _etdrk4_coefficients(lin, dt)

    def n_hat(v):
        return nonlinear(v * dealias, k)

    v = np.fft.rfft(u0(x))
    steps = np.rint(np.asarray(t_out) / dt).astype(int)
    out = np.empty((len(steps), n_modes))
    step = 0
    for i, target in enumerate(steps):
        while step < target:
            nv = n_hat(v)
            a = e2 * v + q * nv
            na = n_hat(a)
            b = e2 * v + q * na
            nb = n_hat(b)
            c = e2 * a + q * (2 * nb - nv)
            nc = n_hat(c)
            v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
            step += 1
        out[i] = np.fft.irfft(v, n=n_modes)
    return SpectralSolution(x=x, t=np.asarray(t_out, dtype=float), u=out)


def burgers_reference(nu: float = 0.01 / np.pi, n_modes: int = 2048, dt: float = 1e-4, n_t: int = 101) -> SpectralSolution:
    """Viscous Burgers ``u_t + u u_x = nu u_xx``, ``u(x,0) = -sin(pi x)``, periodic on [-1, 1)."""

    def advection(v, k):
        u = np.fft.irfft(v, n=n_modes)
        return -0.5j * k * np.fft.rfft(u * u)

    return solve_periodic_etdrk4(
        lambda x: -np.sin(np.pi * x), advection, nu, 0.0, n_modes, dt, np.linspace(0.0, 1.0, n_t)
    )


def allen_cahn_reference(
    diffusion: float = 1e-4, gamma: float = 5.0, n_modes: int = 1024, dt: float = 5e-4, n_t: int = 101
) -> SpectralSolution:
    """Allen–Cahn ``u_t = d u_xx + gamma (u - u^3)``, ``u(x,0) = x^2 cos(pi x)``, periodic on [-1, 1)."""

    def cubic(v, k):
        u = np.fft.irfft(v, n=n_modes)
        return -gamma * np.fft.rfft(u**3)

    return solve_periodic_etdrk4(
        lambda x: x**2 * np.cos(np.pi * x), cubic, diffusion, gamma, n_modes, dt, np.linspace(0.0, 1.0, n_t)
    )
