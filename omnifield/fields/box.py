"""The map between a field's world box and the unit cube that encodings read.

Every field over a box ``[lo, hi]`` (PDE unknowns, INSR states; radiance and SDF fields compute the
same map from their ``aabb``) feeds its encoding ``s = (x - lo) / (hi - lo)``; :class:`BoxMapping`
is that map, once.
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

    def scale(self, dtype: torch.dtype) -> torch.Tensor:
        """``ds/dx = 1 / (hi - lo)`` per axis, ``[D]``."""
        return 1.0 / (self.hi - self.lo).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.lo.to(x.dtype)) / (self.hi - self.lo).to(x.dtype)
