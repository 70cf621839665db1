"""Problem library: analytic residuals vanish, exact transforms hold to machine precision, clear errors."""

import numpy as np
import pytest
import torch

from omnifield.errors import OmnifieldError
from omnifield.pde.problem import Problem, ReferenceGrid, relative_l2
from omnifield.pde.problems import PROBLEMS
from omnifield.pde.problems.poisson import in_lshape
from omnifield.pde.registry import get_problem


def _points(problem, n=300):
    g = torch.Generator().manual_seed(0)
    return problem.sample_interior(n, g).double().requires_grad_(True)


@pytest.mark.parametrize("name", ["helmholtz", "poisson_lshape", "heat", "kovasznay"])
def test_residual_of_analytic_solution_vanishes(name):
    problem = PROBLEMS[name]()
    x = _points(problem)
    assert problem.residual(x, problem.exact(x)).abs().max() < 1e-9
    # and a wrong solution does not
    assert problem.residual(x, problem.exact(x) + 0.1 * x[:, :1] ** 2).abs().max() > 1e-3  # a wrong one does not


@pytest.mark.parametrize("name", ["helmholtz", "poisson_lshape", "heat", "kovasznay"])
def test_analytic_solution_satisfies_its_conditions(name):
    problem = PROBLEMS[name]()
    g = torch.Generator().manual_seed(1)
    for cond in problem.conditions:
        x = cond.sample(50, g).double()
        assert cond.residual(problem.exact, x).abs().max() < 1e-12, cond.name


@pytest.mark.parametrize("name", ["burgers", "allen_cahn", "helmholtz", "heat"])
def test_hard_output_satisfies_conditions_to_machine_precision(name):
    problem = PROBLEMS[name]()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(problem.n_inputs, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()

    def u(x):
        return problem.hard_output(x, 10 * net(x))

    g = torch.Generator().manual_seed(2)
    for cond in problem.conditions:
        if type(cond).__name__ == "Dirichlet":
            x = cond.sample(100, g).double()
            assert cond.residual(u, x).abs().max() < 1e-14, cond.name


def test_lshape_samplers_stay_in_domain_and_on_edges():
    problem = get_problem("poisson_lshape")
    g = torch.Generator().manual_seed(0)
    x = problem.sample_interior(2000, g)
    assert x.shape == (2000, 2) and in_lshape(x).all()
    assert ((x[:, 0] < 0) | (x[:, 1] < 0)).all()
    b = problem.sample_boundary(500, g).double()
    assert problem.exact(b).abs().max() < 1e-12  # sin(pi x) sin(pi y) vanishes on every edge
    on_edge = (b.abs() == 1).any(-1) | ((b == 0).any(-1) & (b >= 0).all(-1))
    assert on_edge.all()


def test_relative_l2_respects_mask():
    ref = ReferenceGrid([np.arange(2.0), np.arange(2.0)], np.ones((2, 2, 1)), mask=np.array([[1, 1], [1, 0]], bool))
    pred = np.ones((2, 2, 1))
    pred[1, 1] = 100.0  # outside the mask: ignored
    pred[0, 0] = 2.0
    assert relative_l2(pred, ref) == pytest.approx(1 / np.sqrt(3))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lo=(0.0,), hi=(0.0,)), "lo < hi"),
        (dict(lo=(0.0, 0.0), hi=(1.0,)), "one bound per input"),
        (dict(lo=(0.0,), hi=(np.inf,)), "finite"),
        (dict(lo=(0.0,), hi=(1.0,), n_outputs=0), "n_outputs"),
        (dict(lo=(0.0,), hi=(1.0,), periodic_axes=(3,)), "periodic axis"),
    ],
)
def test_bad_problem_specs_raise_clear_errors(kwargs, message):
    with pytest.raises(OmnifieldError, match=message):
        Problem("bad", ("x",) * len(kwargs["lo"]), **kwargs)


def test_time_axis_must_be_last():
    with pytest.raises(OmnifieldError, match="time must be the last input"):
        Problem("bad", ("t", "x"), (0, 0), (1, 1), time_axis=0)


def test_unknown_problem_names_the_choices():
    with pytest.raises(OmnifieldError, match="burgers"):
        get_problem("navier")


def test_spectral_references_start_from_the_initial_condition():
    for name in ("burgers", "allen_cahn"):
        problem = PROBLEMS[name]()
        ref = problem.reference()
        x = torch.from_numpy(np.stack([ref.axes[0], np.zeros_like(ref.axes[0])], -1))
        expected = problem.conditions[0].target(x).numpy()[:, 0]
        np.testing.assert_allclose(ref.values[:, 0, 0], expected, atol=1e-10)


def test_neumann_condition_measures_the_normal_derivative():
    from omnifield.pde.problem import Neumann

    problem = get_problem("helmholtz")  # u = sin(pi x) sin(4 pi y); on x = 1: du/dn = pi cos(pi) sin(4 pi y)
    right = problem.box.face(0, "hi")
    exact_flux = Neumann("flux", right, (1.0, 0.0), lambda x: (-np.pi * torch.sin(4 * np.pi * x[:, 1]))[:, None])
    wrong_flux = Neumann("flux", right, (1.0, 0.0), lambda x: torch.zeros_like(x[:, :1]))
    x = right(64, torch.Generator().manual_seed(0)).double()
    assert exact_flux.residual(problem.exact, x).abs().max() < 1e-12
    assert wrong_flux.residual(problem.exact, x).abs().max() > 1.0
