"""Causal weights: the formula of Wang et al., monotone, no gradient; the eps schedule."""

import math

import torch

from omnifield.pde.solvers.causal import CausalSchedule, causal_weights, chunk_losses


def test_causal_weights_match_formula_and_are_monotone():
    losses = torch.tensor([0.5, 0.1, 2.0, 0.0, 0.3], requires_grad=True)
    eps = 3.0
    w = causal_weights(losses, eps)
    plain = [math.exp(-eps * sum(losses[:i].tolist())) for i in range(5)]
    torch.testing.assert_close(w, torch.tensor(plain))
    assert w[0] == 1.0
    assert torch.all(w[1:] <= w[:-1])
    assert not w.requires_grad


def test_chunk_losses_are_per_chunk_means():
    res = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    chunk = torch.tensor([0, 1, 0, 2, 1, 0])
    torch.testing.assert_close(chunk_losses(res, chunk, 4), torch.tensor([10 / 3, 3.5, 4.0, 0.0]))


def test_schedule_advances_only_when_all_weights_are_large():
    s = CausalSchedule((0.1, 1.0, 10.0), delta=0.9)
    s.update(torch.tensor([1.0, 0.95, 0.5]))
    assert s.eps == 0.1
    s.update(torch.tensor([1.0, 0.95, 0.91]))
    assert s.eps == 1.0
    s.update(torch.ones(3))
    s.update(torch.ones(3))
    assert s.eps == 10.0


def test_causal_lbfgs_in_float64_holds_weights_per_block_and_advances_eps(tmp_path):
    import json

    from omnifield.pde.solvers import solve
    from omnifield.pde.solvers.settings import SolverSettings

    settings = SolverSettings(width=8, depth=1, steps=0, lbfgs_steps=6, n_interior=64, n_condition=16, chunks=4,
                              eps="1e-6,1e-5", lbfgs_double=True, lbfgs_points=96, arch="modified")
    metrics = solve("heat", "causal", settings, tmp_path, quiet=True)
    assert math.isfinite(metrics["rel_l2"])
    history = json.loads((tmp_path / "loss_history.json").read_text())
    lbfgs = [h for h in history if h["phase"] == "lbfgs"]
    assert lbfgs and lbfgs[-1]["eps"] == 1e-5  # no Adam step: L-BFGS moved the schedule on (weights ~1)
    assert all(0.0 <= h["min_weight"] <= 1.0 for h in lbfgs)
