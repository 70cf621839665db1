"""What an INSR problem declares: its fields, initial condition and the optimisation stages of one step.

A step is a list of :class:`Stage`: each trains one named field to minimise a
loss at freshly sampled points, reading frozen copies of the fields (the
snapshot taken when the stage starts, and the states at the end of earlier
steps). Advection has one stage; Taylor-Green has three (advect, pressure,
project); elasticity has one (the incremental potential).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from omnifield.pde.insr.field import SpatialFieldConfig

Fields = dict[str, nn.Module]


@dataclass
class StageContext:
    """What a stage loss may read besides the field it trains."""

    snapshot: Fields  # frozen fields when the stage started
    history: list[Fields]  # frozen states at the end of previous steps, most recent first (history[0] = t_n)
    dt: float
    rule: str
    time: float  # t_n, the time at the start of the step


@dataclass
class Stage:
    """Train field ``field`` to minimise ``loss(live_field, ctx, x [N, D]) -> scalar``."""

    name: str
    field: str
    loss: Callable[[nn.Module, StageContext, torch.Tensor], torch.Tensor]


class InsrProblem:
    """Base of time-stepped problems. Subclasses are registered config dataclasses (so checkpoints name them).

    They set ``dim``, ``box``, ``dt``, ``n_steps``, ``rules`` (supported rules),
    ``n_history`` (previous states a step reads) and implement the methods below.
    """

    dim: int
    n_history: int = 1
    rules: tuple[str, ...] = ("midpoint", "implicit_euler")

    def field_configs(self, decoder) -> dict[str, SpatialFieldConfig]:
        """The unknown fields by name, each built with ``decoder`` (a decoder config)."""
        raise NotImplementedError

    def initial_value(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Target of field ``name`` at ``t = 0``.  x [N, D] -> [N, C]"""
        raise NotImplementedError

    def stages(self) -> list[Stage]:
        """The optimisations of one time step, in order."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` stratified points of the box: one jittered point per cell of an ``m^D`` grid
        (``m = floor(n^(1/D))``), the rest uniform; lower-variance Monte Carlo than i.i.d.  -> [n, D]"""
        lo = torch.tensor(self.box[: self.dim])
        hi = torch.tensor(self.box[self.dim :])
        m = int(n ** (1.0 / self.dim) + 1e-9)
        axes = torch.meshgrid(*[torch.arange(m, dtype=torch.float32)] * self.dim, indexing="ij")
        cells = torch.stack(axes, dim=-1).reshape(-1, self.dim)
        jittered = (cells + torch.rand(cells.shape, generator=generator)) / m
        unit = torch.cat([jittered, torch.rand(n - len(cells), self.dim, generator=generator)])
        return lo + (hi - lo) * unit

    def solution(self, fields: Fields, x: torch.Tensor) -> torch.Tensor:
        """The physical quantity compared and plotted (displacement, velocity, ...).  x [N, D] -> [N, C]"""
        raise NotImplementedError

    def exact(self, t: float, x: torch.Tensor) -> torch.Tensor | None:
        """The exact :meth:`solution` at time ``t`` if known, else ``None``.  x [N, D] -> [N, C]"""
        return None
