"""Classical references of the INSR problems: grid advection, stable fluids, Neo-Hookean FEM."""

import math

import numpy as np
import pytest
import torch

from omnifield.pde.reference.advection_grid import cell_centres, semi_lagrangian_advection, upwind_advection
from omnifield.pde.reference.fem_elasticity import NeoHookeanCantilever, lame_parameters, rectangle_mesh
from omnifield.pde.reference.stable_fluids import StableFluids, grid_points


def _pulse(x):
    return np.exp(-((x + 0.5) ** 2) / (2 * 0.1**2))


def test_upwind_at_courant_one_is_an_exact_shift():
    n = 200
    x = cell_centres(n, -1.0, 1.0)
    dx = 2.0 / n
    hist = upwind_advection(_pulse(x), speed=0.5, dx=dx, dt=3 * dx / 0.5, n_steps=4)  # 3 cells per step
    np.testing.assert_allclose(hist[4][12:], _pulse(x)[:-12], atol=1e-12)
    assert np.all(hist[4][:12] == 0)  # zero inflow


def test_upwind_and_semi_lagrangian_converge_to_the_exact_solution():
    errors = {"upwind": [], "sl": []}
    for n in (100, 200, 400):
        x = cell_centres(n, -1.0, 1.0)
        exact = _pulse(x - 0.25 * 0.7)  # Courant number 0.875 per sub-step at every n
        up = upwind_advection(_pulse(x), 0.25, 2.0 / n, 0.07, 10)[-1]
        sl = semi_lagrangian_advection(_pulse(x), 0.25, 2.0 / n, 0.07, 10)[-1]
        errors["upwind"].append(np.linalg.norm(up - exact) / np.linalg.norm(exact))
        errors["sl"].append(np.linalg.norm(sl - exact) / np.linalg.norm(exact))
    up, sl = np.array(errors["upwind"]), np.array(errors["sl"])
    assert np.all(np.diff(up) < 0) and 1.6 < up[0] / up[1] < 2.4  # first order
    assert np.all(np.diff(sl) < 0) and sl[-1] < 1e-3 and sl[-1] < 0.01 * up[-1]


def _taylor_green(nodes, t=0.0, nu=0.0):
    x, y = nodes
    return np.exp(-2 * nu * t) * np.stack([np.sin(x) * np.cos(y), -np.cos(x) * np.sin(y)])


def test_projection_removes_exactly_the_gradient_part():
    solver = StableFluids(32, 2 * math.pi)
    nodes = grid_points(32, 2 * math.pi)
    x, y = nodes
    gradient = np.stack([np.cos(x) * np.sin(2 * y), 2 * np.sin(x) * np.cos(2 * y)])
    projected = solver.diffuse_and_project(_taylor_green(nodes) + gradient, dt=0.1)
    np.testing.assert_allclose(projected, _taylor_green(nodes), atol=1e-12)


@pytest.mark.parametrize("nu", [0.0, 0.1])
def test_stable_fluids_follows_the_taylor_green_decay(nu):
    n, dt, steps = 48, 0.05, 10
    nodes = grid_points(n, 2 * math.pi)
    hist = StableFluids(n, 2 * math.pi, viscosity=nu).simulate(_taylor_green(nodes), dt, steps)
    exact = _taylor_green(nodes, dt * steps, nu)
    assert np.linalg.norm(hist[-1] - exact) / np.linalg.norm(exact) < 0.01
    energy = (hist**2).sum(axis=(1, 2, 3))  # semi-Lagrangian transport adds a little numerical dissipation
    assert energy[-1] / energy[0] == pytest.approx(math.exp(-4 * nu * dt * steps), rel=0.02)
    assert energy[-1] / energy[0] <= math.exp(-4 * nu * dt * steps) + 1e-9


def _beam(gravity=9.8):
    return NeoHookeanCantilever(2.0, 0.5, 1.0, 5000.0, 0.3, gravity, nx=11, ny=4)


def test_mesh_covers_the_rectangle_with_positive_triangles():
    verts, tris = rectangle_mesh(2.0, 0.5, 5, 3)
    p = verts[tris]
    area = 0.5 * ((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1]))
    assert np.all(area > 0) and area.sum() == pytest.approx(1.0)
    assert lame_parameters(1.0, 0.25) == pytest.approx((0.4, 0.4))


def test_beam_without_gravity_stays_at_rest():
    np.testing.assert_allclose(_beam(gravity=0.0).simulate(0.02, 2), 0.0, atol=1e-12)


def test_newton_step_reaches_a_minimum_of_the_incremental_potential():
    beam = _beam()
    x0 = beam.rest.clone()
    x1 = beam.step(x0, x0, 0.02)
    xv = x1.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(beam.energy(xv, x0, 0.02), xv)
    assert grad[beam.free].abs().max() < 1e-8
    assert torch.all(x1[beam.free, 1] < x0[beam.free, 1])  # everything not clamped falls
    # first step from rest: free fall (g dt^2) minus the elastic resistance
    assert 0 < -(x1 - x0)[beam.free, 1].max() <= 9.8 * 0.02**2 + 1e-12
