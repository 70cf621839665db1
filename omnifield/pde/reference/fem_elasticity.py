"""Small finite-element reference: a 2-D Neo-Hookean cantilever under gravity, implicit Euler.

The rectangle ``[0, L] x [0, H]`` (plane strain, unit thickness) is clamped at
``x = 0``. Linear triangles, lumped mass. Each step minimises the incremental
potential (the variational form of implicit Euler)::

    E(x) = sum_i m_i / (2 dt^2) |x_i - (2 x^n_i - x^{n-1}_i)|^2 + sum_e A_e Psi(F_e) + sum_i m_i g y_i

by Newton's method: element gradients and Hessians from ``torch.func``
(vectorised over elements), Hessians projected to positive semi-definite,
assembled into a ``scipy.sparse`` matrix, solved with ``spsolve``, with a
back-tracking line search that keeps every ``det F > 0``.

``Psi(F) = mu/2 (tr F^T F - 2) - mu log J + lam/2 (log J)^2`` (compressible Neo-Hookean).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch


def lame_parameters(youngs: float, poisson: float) -> tuple[float, float]:
    """``(mu, lam)`` from Young's modulus and Poisson's ratio."""
    mu = youngs / (2.0 * (1.0 + poisson))
    lam = youngs * poisson / ((1.0 + poisson) * (1.0 - 2.0 * poisson))
    return mu, lam


def neo_hookean_energy_density(F: torch.Tensor, mu: float, lam: float) -> torch.Tensor:
    """Energy per unit rest area.  F [..., 2, 2] -> [...]; ``log J`` uses ``J`` clamped at 1e-6."""
    J = (F[..., 0, 0] * F[..., 1, 1] - F[..., 0, 1] * F[..., 1, 0]).clamp_min(1e-6)
    log_j = torch.log(J)
    return 0.5 * mu * ((F * F).sum((-1, -2)) - 2.0) - mu * log_j + 0.5 * lam * log_j**2


def rectangle_mesh(length: float, height: float, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """``nx x ny`` vertices, each grid cell split into two triangles (counter-clockwise).  -> [V, 2], [T, 3]"""
    xs, ys = np.meshgrid(np.linspace(0.0, length, nx), np.linspace(0.0, height, ny), indexing="ij")
    vertices = np.stack([xs.ravel(), ys.ravel()], axis=-1)
    idx = np.arange(nx * ny).reshape(nx, ny)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    triangles = np.concatenate([np.stack([a, b, c], -1), np.stack([a, c, d], -1)])
    return vertices, triangles


class NeoHookeanCantilever:
    """Lumped-mass linear-triangle model of the clamped beam; :meth:`simulate` returns displacements per step."""

    def __init__(self, length, height, density, youngs, poisson, gravity, nx: int = 41, ny: int = 11):
        if nx < 2 or ny < 2:
            raise ValueError("the FEM mesh needs nx, ny >= 2")
        self.mu, self.lam = lame_parameters(youngs, poisson)
        self.gravity = gravity
        verts, tris = rectangle_mesh(length, height, nx, ny)
        self.rest = torch.tensor(verts, dtype=torch.float64)  # [V, 2]
        self.triangles = torch.tensor(tris, dtype=torch.long)  # [T, 3]
        edges = self._edges(self.rest)  # [T, 2, 2]
        self.area = 0.5 * torch.linalg.det(edges)  # [T]
        self.dm_inv = torch.linalg.inv(edges)  # [T, 2, 2]
        mass = torch.zeros(len(verts), dtype=torch.float64)
        mass.index_add_(0, self.triangles.reshape(-1), (density * self.area / 3.0).repeat_interleave(3))
        self.mass = mass  # [V]
        self.free = torch.nonzero(self.rest[:, 0] > 1e-9 * length).squeeze(1)  # vertices not clamped
        self.free_dofs = torch.stack([2 * self.free, 2 * self.free + 1], -1).reshape(-1).numpy()
        dof = (2 * self.triangles[:, :, None] + torch.arange(2)).reshape(-1, 6)  # [T, 6]
        self.rows = dof[:, :, None].expand(-1, 6, 6).reshape(-1).numpy()
        self.cols = dof[:, None, :].expand(-1, 6, 6).reshape(-1).numpy()

    def _edges(self, x: torch.Tensor) -> torch.Tensor:
        p = x[self.triangles]  # [T, 3, 2]
        return torch.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]], dim=-1)  # columns are edges

    def _element_energy(self, xe: torch.Tensor, dm_inv: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
        p = xe.reshape(3, 2)
        F = torch.stack([p[1] - p[0], p[2] - p[0]], dim=-1) @ dm_inv
        return area * neo_hookean_energy_density(F, self.mu, self.lam)

    def energy(self, x: torch.Tensor, target: torch.Tensor, dt: float) -> torch.Tensor:
        """Incremental potential of positions ``x [V, 2]`` with inertial target ``[V, 2]``."""
        F = self._edges(x) @ self.dm_inv
        elastic = (self.area * neo_hookean_energy_density(F, self.mu, self.lam)).sum()
        inertia = (self.mass[:, None] * (x - target) ** 2).sum() / (2.0 * dt**2)
        return inertia + elastic + self.gravity * (self.mass * x[:, 1]).sum()

    def _hessian(self, x: torch.Tensor, dt: float) -> scipy.sparse.csr_matrix:
        xe = x[self.triangles].reshape(-1, 6)
        h = torch.func.vmap(torch.func.hessian(self._element_energy))(xe, self.dm_inv, self.area)  # [T, 6, 6]
        vals, vecs = torch.linalg.eigh(h)
        h = vecs @ torch.diag_embed(vals.clamp_min(0.0)) @ vecs.transpose(-1, -2)
        n = 2 * len(self.rest)
        elastic = scipy.sparse.coo_matrix((h.reshape(-1).numpy(), (self.rows, self.cols)), shape=(n, n)).tocsr()
        inertia = scipy.sparse.diags(np.repeat(self.mass.numpy(), 2) / dt**2)
        return (elastic + inertia)[self.free_dofs][:, self.free_dofs].tocsc()

    def _valid(self, x: torch.Tensor) -> bool:
        return bool((torch.linalg.det(self._edges(x)) > 0).all())

    def step(self, x: torch.Tensor, x_prev: torch.Tensor, dt: float, tol: float = 1e-9, max_newton: int = 50):
        """One implicit-Euler step from positions ``x`` (t_n) and ``x_prev`` (t_{n-1}).  -> [V, 2]"""
        target = 2.0 * x - x_prev
        x_new = x.clone()
        for _ in range(max_newton):
            xv = x_new.clone().requires_grad_(True)
            e = self.energy(xv, target, dt)
            (grad,) = torch.autograd.grad(e, xv)
            g = grad.reshape(-1).numpy()[self.free_dofs]
            direction = scipy.sparse.linalg.spsolve(self._hessian(x_new, dt), -g)
            full = np.zeros(2 * len(self.rest))
            full[self.free_dofs] = direction
            delta = torch.tensor(full).reshape(-1, 2)
            alpha, e0 = 1.0, e.item()
            while alpha > 1e-8:
                trial = x_new + alpha * delta
                if self._valid(trial) and self.energy(trial, target, dt).item() <= e0 + 1e-12 * abs(e0):
                    break
                alpha *= 0.5
            x_new = x_new + alpha * delta
            if alpha * delta.abs().max().item() < tol:
                break
        return x_new

    def simulate(self, dt: float, n_steps: int) -> np.ndarray:
        """Displacements of every vertex from rest, starting at rest with zero velocity.  -> [n_steps + 1, V, 2]"""
        x_prev = x = self.rest.clone()
        out = [torch.zeros_like(x)]
        for _ in range(n_steps):
            x, x_prev = self.step(x, x_prev, dt), x
            out.append(x - self.rest)
        return torch.stack(out).numpy()
