"""Reference solvers: published values, exact solutions, conservation and convergence."""

import numpy as np

from omnifield.pde.reference.spectral import burgers_reference, solve_periodic_etdrk4


def _no_nonlinearity(v, k):
    return np.zeros_like(v)


def test_etdrk4_heat_mode_decays_exactly():
    nu = 0.05
    sol = solve_periodic_etdrk4(lambda x: np.sin(3 * np.pi * x), _no_nonlinearity, nu, 0.0, 64, 0.01, np.array([0.0, 0.5, 1.0]))
    exact = np.exp(-nu * (3 * np.pi) ** 2 * sol.t)[:, None] * np.sin(3 * np.pi * sol.x)[None]
    np.testing.assert_allclose(sol.u, exact, atol=1e-12)


def test_burgers_max_slope_matches_basdevant():
    # Basdevant et al. (1986): max |u_x| = 152.00516 at t = 1.6037/pi for nu = 0.01/pi.
    n = 2048
    t = np.array([1.6037 / np.pi])

    def advection(v, k):
        u = np.fft.irfft(v, n=n)
        return -0.5j * k * np.fft.rfft(u * u)

    sol = solve_periodic_etdrk4(lambda x: -np.sin(np.pi * x), advection, 0.01 / np.pi, 0.0, n, 1e-4, t)
    k = np.pi * np.fft.rfftfreq(n, 1.0 / n)
    slope = np.abs(np.fft.irfft(1j * k * np.fft.rfft(sol.u[0]), n=n)).max()
    assert abs(slope - 152.00516) < 1e-3


def test_burgers_conserves_mass_and_dissipates_energy():
    n = 256

    def advection(v, k):
        u = np.fft.irfft(v, n=n)
        return -0.5j * k * np.fft.rfft(u * u)

    t = np.linspace(0.0, 0.5, 6)
    sol = solve_periodic_etdrk4(lambda x: 0.3 - np.sin(np.pi * x), advection, 0.05, 0.0, n, 1e-3, t)
    np.testing.assert_allclose(sol.u.mean(axis=1), 0.3, atol=1e-12)
    energy = (sol.u**2).mean(axis=1)
    assert np.all(np.diff(energy) < 0)


def test_burgers_reference_grid_shape_and_initial_condition():
    sol = burgers_reference(n_modes=256, dt=1e-3, n_t=11)
    assert sol.u.shape == (11, 256)
    np.testing.assert_allclose(sol.u[0], -np.sin(np.pi * sol.x), atol=1e-12)


def test_allen_cahn_etdrk4_is_fourth_order_in_time():
    n = 128

    def cubic(v, k):
        u = np.fft.irfft(v, n=n)
        return -5.0 * np.fft.rfft(u**3)

    def run(dt):
        u0 = lambda x: x**2 * np.cos(np.pi * x)  # noqa: E731
        return solve_periodic_etdrk4(u0, cubic, 1e-2, 5.0, n, dt, np.array([0.4])).u[0]

    fine = run(0.4 / 256)
    errors = [np.abs(run(0.4 / m) - fine).max() for m in (8, 16)]
    assert errors[1] < errors[0] / 10  # fourth order: ratio ~16


def test_allen_cahn_converges_under_spatial_refinement():
    def run(n):
        def cubic(v, k):
            u = np.fft.irfft(v, n=n)
            return -5.0 * np.fft.rfft(u**3)

        sol = solve_periodic_etdrk4(lambda x: x**2 * np.cos(np.pi * x), cubic, 1e-3, 5.0, n, 2e-3, np.array([0.3]))
        return sol.u[0]

    fine = run(512)
    errors = [np.abs(run(n) - fine[:: 512 // n]).max() for n in (64, 128, 256)]
    assert errors[0] > 10 * errors[1] > 10 * errors[2]  # spectral: much faster than algebraic
    assert errors[2] < 1e-4
