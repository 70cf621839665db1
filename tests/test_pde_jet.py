"""The closed-form jet of a Gaussian-embedding field gives the same residuals and gradients as autograd."""

import pytest
import torch

from omnifield.fields import GaussianEmbeddingConfig
from omnifield.pde.field import PDEField, UnknownConfig
from omnifield.pde.registry import get_problem, load_plugins
from omnifield.pde.solvers.jet import JetField, jet_supported
from omnifield.pde.solvers.run import build_solution
from omnifield.pde.solvers.settings import SolverSettings


def _field(covariance="diagonal", depth=2):
    torch.manual_seed(0)
    enc = GaussianEmbeddingConfig(n_gaussians=25, n_features=3, init_sigma=0.2, covariance=covariance)
    field = PDEField((-1.0, -1.0), (1.0, 1.0), 1, UnknownConfig(encoding="gaussian_embedding", encoding_config=enc,
                                                                width=6, n_hidden_layers=depth)).double()
    with torch.no_grad():
        field.encoding.features.normal_()
        field.encoding.means.add_(0.05 * torch.randn_like(field.encoding.means))
        field.encoding.log_precision.add_(0.3 * torch.randn_like(field.encoding.log_precision))
    return field


@pytest.mark.parametrize("depth", [1, 2])
def test_jet_residual_and_parameter_gradients_match_autograd(depth):
    load_plugins()
    problem = get_problem("helmholtz")
    field = _field(depth=depth)
    jet = JetField(field)
    x = torch.rand(50, 2, dtype=torch.float64) * 2 - 1

    def residual(module):
        xx = x.clone().requires_grad_(True)
        return problem.residual(xx, problem.hard_output(xx, module(xx)))

    r_auto, r_jet = residual(field), residual(jet)
    torch.testing.assert_close(r_jet, r_auto, rtol=1e-9, atol=1e-9)
    g_auto = torch.autograd.grad(r_auto.pow(2).mean(), list(field.parameters()))
    g_jet = torch.autograd.grad(residual(jet).pow(2).mean(), list(field.parameters()))
    for a, b in zip(g_jet, g_auto):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(jet(x), field(x))


def test_jet_mixed_second_derivative_matches_autograd():
    field = _field(depth=1)
    x = torch.rand(20, 2, dtype=torch.float64, requires_grad=True)
    (du,) = torch.autograd.grad(field(x).sum(), x, create_graph=True)
    (mixed,) = torch.autograd.grad(du[:, 0].sum(), x)
    (dj,) = torch.autograd.grad(JetField(field)(x).sum(), x, create_graph=True)
    (mixed_jet,) = torch.autograd.grad(dj[:, 0].sum(), x)
    torch.testing.assert_close(mixed_jet, mixed, rtol=1e-9, atol=1e-9)


def test_jet_is_used_only_where_supported():
    assert not jet_supported(_field(covariance="full"))
    load_plugins()
    gen = torch.Generator().manual_seed(0)
    pig = SolverSettings(field="gaussian_embedding", width=8, depth=1, n_gaussians=16, double=True)
    solution, _ = build_solution("pig", get_problem("helmholtz"), pig, gen)
    assert isinstance(solution.field, JetField)
    solution, _ = build_solution("pig", get_problem("helmholtz"), SolverSettings(**{**pig.__dict__, "double": False}), gen)
    assert isinstance(solution.field, PDEField)
