"""The map between a field's world box and the unit cube that encodings read, and fields built on it.

Every field over a box ``[lo, hi]`` (radiance and SDF fields over their ``aabb``, PDE unknowns, INSR
states) feeds its encoding ``s = (x - lo) / (hi - lo)``; :class:`BoxMapping` is that map, once.
:class:`BoxField` is the one mechanism of the PDE unknowns (:class:`~omnifield.pde.field.PDEField`)
and INSR states (:class:`~omnifield.pde.insr.field.SpatialField`): box -> decoder input -> decoder.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class BoxMapping(nn.Module):
    """``forward(x [..., D]) -> s [..., D]`` with ``s = (x - lo) / (hi - lo)``; ``scale [D] = ds/dx``.

    ``lo``/``hi`` are non-persistent float32 buffers (the box comes from the config, not the weights)
    and are cast to the dtype of ``x``, so a float32 box maps float64 points without rounding them.
    """

    def __init__(self, lo: Sequence[float] | torch.Tensor, hi: Sequence[float] | torch.Tensor):
        super().__init__()
        lo_t = torch.as_tensor(lo, dtype=torch.float32).reshape(-1)
        hi_t = torch.as_tensor(hi, dtype=torch.float32).reshape(-1)
        if lo_t.shape != hi_t.shape or lo_t.numel() == 0 or not bool((hi_t > lo_t).all()):
            raise ValueError(f"a box needs lo < hi on every axis, got lo={lo_t.tolist()}, hi={hi_t.tolist()}")
        self.register_buffer("lo", lo_t, persistent=False)
        self.register_buffer("hi", hi_t, persistent=False)

    @classmethod
    def from_bounds(cls, bounds: Sequence[float]) -> "BoxMapping":
        """From the flat ``(lo_1..lo_D, hi_1..hi_D)`` layout of field configs (``box``, ``aabb``)."""
        flat = torch.as_tensor(bounds, dtype=torch.float32).reshape(-1)
        if flat.numel() % 2:
            raise ValueError(f"box bounds must be (lo_1..lo_D, hi_1..hi_D), got {list(bounds)}")
        d = flat.numel() // 2
        return cls(flat[:d], flat[d:])

    @property
    def n_dims(self) -> int:
        return self.lo.numel()

    @property
    def bounds(self) -> torch.Tensor:
        """The flat ``[2D]`` layout ``(lo_1..lo_D, hi_1..hi_D)`` (a radiance field's ``aabb``)."""
        return torch.cat([self.lo, self.hi])

    def scale(self, dtype: torch.dtype) -> torch.Tensor:
        """``ds/dx = 1 / (hi - lo)`` per axis, ``[D]``."""
        return 1.0 / (self.hi - self.lo).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.lo.to(x.dtype)) / (self.hi - self.lo).to(x.dtype)

    def inverse(self, s: torch.Tensor) -> torch.Tensor:
        """Unit-cube ``s [..., D]`` -> world ``x [..., D] = lo + s (hi - lo)``."""
        return self.lo.to(s.dtype) + s * (self.hi - self.lo).to(s.dtype)


def inside_unit_cube(s: torch.Tensor) -> torch.Tensor:
    """Whether unit-cube coordinates ``s [..., D]`` lie in ``[0, 1]^D`` (boundary included): ``[...]`` bool."""
    return ((s >= 0.0) & (s <= 1.0)).all(dim=-1)


def box_of_aabb(aabb: Sequence[float]) -> BoxMapping:
    """The mapping of a 3-D field's ``aabb = (xmin, ymin, zmin, xmax, ymax, zmax)``; ValueError otherwise."""
    if len(aabb) != 6 or not all(hi > lo for lo, hi in zip(aabb[:3], aabb[3:])):
        raise ValueError(f"aabb must be (xmin, ymin, zmin, xmax, ymax, zmax) with max > min, got {aabb}")
    return BoxMapping.from_bounds(aabb)


class BoxField(nn.Module):
    """A neural field over a box: ``forward(x [N, D]) -> [N, C]`` as ``s = box(x)``, ``h = inputs(s)``,
    ``decode(h, s)``.

    Subclasses set ``encoding`` (an :class:`~omnifield.fields.Encoding` or None) and ``decoder``
    (``forward(h [N, F], s [N, D]) -> [N, C]``) and say in :meth:`inputs` how ``s`` becomes the decoder
    input; :meth:`features` is what derivative code reads (with ``box.scale`` = ``ds/dx``).
    """

    def __init__(self, box: BoxMapping):
        super().__init__()
        self.box = box

    def inputs(self, s: torch.Tensor) -> torch.Tensor:
        """Unit-cube ``s [N, D]`` -> decoder input ``h [N, F]``."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, D]`` -> decoder input ``h [N, F]`` and the unit-cube coordinates ``s [N, D]``."""
        s = self.box(x)
        return self.inputs(s), s

    def decode(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Decoder input ``h [N, F]`` (and ``s [N, D]``, for coordinate-aware decoders) -> ``[N, C]``."""
        return self.decoder(h, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, s = self.features(x)
        return self.decode(h, s)

    def n_parameters(self) -> int:
        """Number of trainable scalars (the memory of the state, in floats)."""
        return sum(p.numel() for p in self.parameters())
