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
