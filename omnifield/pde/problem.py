"""What a PDE problem is: a domain, a residual, initial/boundary conditions and a reference solution.

Coordinates are physical (``x [N, D]``, time last for evolution problems).
A solver evaluates ``u = field(x)`` with ``x.requires_grad_()`` and asks the
problem for ``residual(x, u) [N, R]``; conditions compare the field with their
targets on points they sample. The reference is a grid of exact or classical
solver values, and :func:`relative_l2` measures a prediction against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from omnifield.errors import OmnifieldError
from omnifield.pde.derivatives import gradient

FieldFn = Callable[[torch.Tensor], torch.Tensor]  # x [N, D] -> u [N, O]
Sampler = Callable[[int, torch.Generator], torch.Tensor]  # (n, generator) -> x [n, D]


@dataclass
class ReferenceGrid:
    """Reference values on a tensor-product grid; ``mask`` marks points inside the domain."""

    axes: list[np.ndarray]  # D arrays [n_d]
    values: np.ndarray  # [n_0, ..., n_{D-1}, O]
    mask: np.ndarray | None = None  # [n_0, ..., n_{D-1}] bool

    def points(self) -> np.ndarray:  # [M, D], 'ij' order
        """All grid points, row-major over the axes."""
        mesh = np.meshgrid(*self.axes, indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=-1)


def relative_l2(prediction: np.ndarray, reference: ReferenceGrid) -> float:
    """``||u - u_ref||_2 / ||u_ref||_2`` over grid points inside the domain, all outputs together."""
    ref = reference.values
    if prediction.shape != ref.shape:
        raise ValueError(f"prediction shape {prediction.shape} != reference shape {ref.shape}")
    mask = np.ones(ref.shape[:-1], bool) if reference.mask is None else reference.mask
    diff = (prediction - ref)[mask]
    return float(np.linalg.norm(diff) / np.linalg.norm(ref[mask]))


def unit_points(n: int, d: int, generator: torch.Generator, quasi: bool = False) -> torch.Tensor:  # [n, d]
    """Points in ``[0, 1)^d``: independent uniform draws, or (``quasi``) the first ``n`` points of a
    scrambled Sobol sequence whose scrambling seed is drawn from ``generator``.

    Sobol points cover the cube evenly (every 1-D projection of the first ``2^m`` points has exactly
    one point in each interval ``[i 2^-m, (i + 1) 2^-m)``), so a mean over them estimates an integral
    of a smooth function with an error close to ``O(1/n)`` instead of ``O(1/sqrt(n))``."""
    if not quasi:
        return torch.rand(n, d, generator=generator)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(n)


class Box:
    """Axis-aligned box ``[lo, hi]`` with uniform samplers for the interior and each face."""

    def __init__(self, lo, hi):
        self.lo = torch.as_tensor(lo, dtype=torch.float32)
        self.hi = torch.as_tensor(hi, dtype=torch.float32)

    def sample(self, n: int, generator: torch.Generator, quasi: bool = False) -> torch.Tensor:  # [n, D]
        """``n`` points of the box, random or (``quasi``) Sobol (see :func:`unit_points`)."""
        return self.lo + (self.hi - self.lo) * unit_points(n, self.lo.numel(), generator, quasi)

    def face(self, axis: int, side: str) -> Sampler:
        """Sampler of the face ``x[axis] = lo[axis]`` (``side="lo"``) or ``hi[axis]``."""
        value = (self.lo if side == "lo" else self.hi)[axis]

        def sample(n: int, generator: torch.Generator) -> torch.Tensor:
            x = self.sample(n, generator)
            x[:, axis] = value
            return x

        return sample


class Condition:
    """A constraint sampled on points: subclasses give ``residual(field, x) [n, k]``."""

    name: str
    sample: Sampler

    def residual(self, field: FieldFn, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Dirichlet(Condition):
    """``u[:, components](x) = target(x)`` on the sampled set (initial conditions are Dirichlet at t = 0)."""

    def __init__(self, name: str, sample: Sampler, target: Callable[[torch.Tensor], torch.Tensor], components=(0,)):
        self.name, self.sample, self.target, self.components = name, sample, target, tuple(components)

    def residual(self, field: FieldFn, x: torch.Tensor) -> torch.Tensor:
        return field(x)[:, list(self.components)] - self.target(x)


class Neumann(Condition):
    """``du/dn = target(x)`` with outward normal ``normal [D]`` on the sampled face (first output)."""

    def __init__(self, name: str, sample: Sampler, normal, target: Callable[[torch.Tensor], torch.Tensor]):
        self.name, self.sample, self.target = name, sample, target
        self.normal = torch.as_tensor(normal, dtype=torch.float32)

    def residual(self, field: FieldFn, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        du = gradient(field(x)[:, 0], x)
        return (du * self.normal.to(du)).sum(-1, keepdim=True) - self.target(x)


class Periodic(Condition):
    """``u`` and ``du/dx_axis`` equal on the faces ``x_axis = lo`` and ``x_axis = hi``."""

    def __init__(self, name: str, sample: Sampler, axis: int, period: float):
        self.name, self.sample, self.axis, self.period = name, sample, axis, period

    def residual(self, field: FieldFn, x: torch.Tensor) -> torch.Tensor:
        lo = x.detach().clone().requires_grad_(True)
        shift = torch.zeros_like(lo[0])
        shift[self.axis] = self.period
        hi = (x.detach() + shift).requires_grad_(True)
        u_lo, u_hi = field(lo), field(hi)
        d_lo = gradient(u_lo[:, 0], lo)[:, self.axis : self.axis + 1]
        d_hi = gradient(u_hi[:, 0], hi)[:, self.axis : self.axis + 1]
        return torch.cat([u_lo - u_hi, d_lo - d_hi], dim=-1)


class Problem:
    """Base class of a PDE problem on the bounding box ``[lo, hi]`` (time last when ``time_axis`` is set).

    Subclasses implement :meth:`residual` and :meth:`reference`, fill ``conditions`` and may override
    :meth:`sample_interior` (non-rectangular domains), :meth:`hard_output` (an output transform that
    satisfies the initial/boundary conditions exactly) and :meth:`exact` (analytic solution).
    """

    description = ""

    def __init__(self, name, input_names, lo, hi, n_outputs=1, time_axis=None, periodic_axes=()):
        self.name = name
        self.input_names = tuple(input_names)
        self.lo = np.asarray(lo, dtype=float)
        self.hi = np.asarray(hi, dtype=float)
        self.n_outputs = int(n_outputs)
        self.time_axis = time_axis
        self.periodic_axes = tuple(periodic_axes)
        self.conditions: list[Condition] = []
        self._validate()
        self.box = Box(self.lo, self.hi)

    @property
    def n_inputs(self) -> int:
        return len(self.input_names)

    def _validate(self) -> None:
        where = f"PDE problem {self.name!r}"
        d = len(self.input_names)
        if d == 0 or self.lo.shape != (d,) or self.hi.shape != (d,):
            raise OmnifieldError(f"{where}: lo/hi must have one bound per input {self.input_names}")
        if not np.all(np.isfinite(self.lo)) or not np.all(np.isfinite(self.hi)) or np.any(self.hi <= self.lo):
            raise OmnifieldError(f"{where}: every interval needs finite lo < hi, got lo={self.lo}, hi={self.hi}")
        if self.n_outputs < 1:
            raise OmnifieldError(f"{where}: n_outputs must be >= 1, got {self.n_outputs}")
        if self.time_axis is not None and self.time_axis != d - 1:
            raise OmnifieldError(f"{where}: time must be the last input, got time_axis={self.time_axis}")
        for axis in self.periodic_axes:
            if not 0 <= axis < d or axis == self.time_axis:
                raise OmnifieldError(f"{where}: periodic axis {axis} must be a spatial input index")

    def sample_interior(self, n: int, generator: torch.Generator, quasi: bool = False) -> torch.Tensor:  # [n, D]
        """Collocation points, uniform in the domain (``quasi``: a scrambled Sobol set)."""
        return self.box.sample(n, generator, quasi)

    def residual(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # [N, D], [N, O] -> [N, R]
        raise NotImplementedError

    def hard_output(self, x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:  # [N, D], [N, O] -> [N, O]
        raise OmnifieldError(
            f"problem {self.name!r} has no exact output transform for its conditions; "
            "use --solver moe (mixture-of-experts hard constraint) or pinn"
        )

    @property
    def has_hard_output(self) -> bool:
        return type(self).hard_output is not Problem.hard_output

    def exact(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, O]
        raise NotImplementedError(f"problem {self.name!r} has no closed-form solution")

    def reference(self) -> ReferenceGrid:
        raise NotImplementedError
