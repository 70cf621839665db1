"""Implicit time-integration rules of an INSR step.

For ``du/dt = f(u)`` the new field ``u_new`` must satisfy at every point::

    implicit Euler:  u_new - u_old = dt * f(u_new)
    midpoint:        u_new - u_old = dt * f((u_new + u_old) / 2)

``f`` may take spatial derivatives: it receives the rule's state as values at
points ``x`` that require grad, so ``torch.autograd.grad`` differentiates
through both fields.
"""

from __future__ import annotations

from typing import Callable

import torch

from omnifield.errors import OmnifieldError

RULES = ("midpoint", "implicit_euler")


def check_rule(rule: str, allowed: tuple[str, ...] = RULES, where: str = "--insr-rule") -> str:
    """``rule`` if it is one of ``allowed``, else :class:`OmnifieldError` naming ``where``."""
    if rule not in allowed:
        raise OmnifieldError(f"{where}: unknown or unsupported time rule {rule!r}; choose from: {', '.join(allowed)}")
    return rule


def rule_state(rule: str, u_new: torch.Tensor, u_old: torch.Tensor) -> torch.Tensor:
    """The state at which the rule evaluates ``f``: ``u_new`` or ``(u_new + u_old) / 2``.  # [N, C]"""
    return u_new if rule == "implicit_euler" else 0.5 * (u_new + u_old)


def step_residual(
    rule: str,
    u_new: torch.Tensor,  # [N, C]
    u_old: torch.Tensor,  # [N, C]
    rhs: Callable[[torch.Tensor], torch.Tensor],
    dt: float,
) -> torch.Tensor:
    """``u_new - u_old - dt * rhs(rule_state)``: zero where the rule holds.  # [N, C]"""
    return u_new - u_old - dt * rhs(rule_state(rule, u_new, u_old))


def spatial_gradient(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``d values[:, c] / d x`` for every channel, keeping the graph.  values [N, C], x [N, D] -> [N, C, D]."""
    rows = [
        torch.autograd.grad(values[:, c].sum(), x, create_graph=True)[0] for c in range(values.shape[1])
    ]
    return torch.stack(rows, dim=1)
