"""The mixture-of-experts hard constraint solves Poisson on the L-shape, and its constraints hold exactly."""

import math

import pytest
import torch

from omnifield.errors import OmnifieldError
from omnifield.pde.field import PDEField, UnknownConfig
from omnifield.pde.problems import Burgers, PoissonLShape
from omnifield.pde.solvers.moe import MixtureOfExpertsConstraint
from omnifield.pde.solvers.run import solve
from omnifield.pde.solvers.settings import SolverSettings


def _moe(problem, n_basis=24, width=24, n_experts=3, n_points=16, rtol=None):
    torch.manual_seed(0)
    basis = PDEField(problem.lo, problem.hi, n_basis, UnknownConfig(width=width, n_hidden_layers=2))
    g = torch.Generator().manual_seed(0)
    return MixtureOfExpertsConstraint(problem, basis, n_basis, n_experts, n_points, g, rtol=rtol).double()


@pytest.mark.parametrize("rtol", [None, 1e-3])
def test_zero_targets_hold_within_the_damped_bound_at_every_constraint_point(rtol):
    """Homogeneous Dirichlet (poisson_lshape): the damped solve leaves ``|C_e w_e| <= sqrt(lam) |w0_e| / 2``
    (``sqrt(lam) = rtol |C_e|_F``), and the blend ``u = sum_e g_e phi . w_e`` is as small at every expert's
    points, overlaps included (each expert covering a point has it as a constraint)."""
    moe = _moe(PoissonLShape(), rtol=rtol)
    rtol = rtol or torch.finfo(torch.float64).eps ** 0.5
    with torch.no_grad():
        moe.w0.normal_()
        w = moe.expert_weights()
        for e in range(moe.n_experts):
            pts = moe.points[e][0].double()
            assert (moe.windows(pts)[:, e] > 0).all()
            c = moe.basis(pts)
            bound = 0.5 * rtol * c.norm() * moe.w0[e, :, 0].norm()
            assert (c @ w[e, :, 0]).norm() <= bound * (1 + 1e-6)
            assert moe(pts).abs().max() <= bound * (1 + 1e-6)
            assert bound < 1e4 * rtol
    assert torch.allclose(moe.gates(pts).sum(-1), torch.ones(len(pts), dtype=torch.float64))
    counts = [moe.points[e][0].shape[0] for e in range(moe.n_experts)]
    assert max(counts) == 16 and min(counts) >= 8  # an evenly spread prefix, at most M per expert


def test_nonzero_targets_hold_in_the_blend():
    """Burgers' initial condition -sin(pi x) (non-zero) is met by the blended solution at every point."""
    moe = _moe(Burgers())
    with torch.no_grad():
        moe.w0.normal_()
        for e in range(moe.n_experts):
            pts = moe.points[e][0].double()
            assert (moe(pts)[:, 0] - moe.targets[e][0].double()).abs().max() < 1e-4


def test_gradients_reach_w0_and_basis_and_stay_bounded():
    moe = _moe(PoissonLShape()).float()
    x = PoissonLShape().sample_interior(256, torch.Generator().manual_seed(2)).requires_grad_(True)
    (du,) = torch.autograd.grad(moe(x).sum(), x, create_graph=True)
    du.pow(2).sum().backward()
    grads = [moe.w0.grad] + [p.grad for p in moe.basis.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert moe.w0.grad.abs().max() > 0
    assert max(float(g.abs().max()) for g in grads) < 1e4


def test_basis_wider_than_the_network_spans_is_rejected():
    with pytest.raises(OmnifieldError, match="--basis"):
        _moe(PoissonLShape(), n_basis=64, width=32, n_points=16)


def test_small_moe_solves_poisson_on_the_lshape(tmp_path, one_thread):
    """End to end on poisson_lshape (exact solution sin(pi x) sin(pi y)): before the overlapping windows
    and the damped solve the error stayed at ~1 (experts' outputs ~0)."""
    s = SolverSettings(width=24, depth=2, basis=24, constraint_points=16, experts=2, steps=300, lbfgs_steps=150,
                       n_interior=600, lr=3e-3)
    metrics = solve("poisson_lshape", "moe", s, tmp_path, quiet=True)
    assert math.isfinite(metrics["rel_l2"]) and metrics["rel_l2"] < 5e-2
