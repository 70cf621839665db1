"""Mixture-of-experts hard constraint: exact at its constraint points, differentiable, clear errors."""

import pytest
import torch

from omnifield.errors import OmnifieldError
from omnifield.pde.field import PDEField, UnknownConfig
from omnifield.pde.problems import Burgers, Heat2D, Kovasznay
from omnifield.pde.solvers.moe import MixtureOfExpertsConstraint


def _moe(problem, n_basis=32, n_experts=3, n_points=8):
    torch.manual_seed(0)
    basis = PDEField(problem.lo, problem.hi, n_basis, UnknownConfig(width=32, n_hidden_layers=2))
    g = torch.Generator().manual_seed(0)
    return MixtureOfExpertsConstraint(problem, basis, n_basis, n_experts, n_points, g).double()


@pytest.mark.parametrize("problem_cls", [Burgers, Heat2D])
def test_constraints_hold_to_machine_precision_per_expert(problem_cls):
    moe = _moe(problem_cls())
    with torch.no_grad():
        moe.w0.normal_()
    for e in range(moe.n_experts):
        for comp in range(moe.n_outputs):
            pts = moe.points[e][comp]
            if pts.shape[0] == 0:  # e.g. the outlet pressure lies in the last slab only
                continue
            assert 0 < pts.shape[0] <= 8
            assert (moe.windows(pts.double())[:, e] > 0).all()  # inside the expert's (overlapping) window
            u = moe(pts.double())[:, comp]
            assert (u - moe.targets[e][comp].double()).abs().max() < 1e-8


def test_solution_is_differentiable_in_basis_and_w0():
    moe = _moe(Burgers())
    x = torch.rand(32, 2, dtype=torch.float64, requires_grad=True)
    u = moe(x)
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    du.pow(2).sum().backward()
    assert moe.w0.grad is not None
    assert all(p.grad is not None for p in moe.basis.parameters())


def test_more_constraint_points_than_basis_is_rejected():
    with pytest.raises(OmnifieldError, match="constraint-points"):
        _moe(Burgers(), n_basis=8, n_points=9)


def test_components_with_their_own_conditions_get_their_own_points():
    moe = _moe(Kovasznay())  # u, v on every wall; p on the outlet x = 1 only (the last slab)
    assert [moe.points[e][2].shape[0] for e in range(3)] == [0, 0, 8]
    assert max(moe.points[e][0].shape[0] for e in range(3)) == 8
