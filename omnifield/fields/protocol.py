"""What a field offers, as typed protocols: callers test ``isinstance(f, RadianceFieldLike)`` instead of
probing attributes one by one.

Boxes follow the package's flat layout: ``aabb [6] = (xmin, ymin, zmin, xmax, ymax, zmax)``
(``aabb.view(2, 3)`` gives the ``[lo, hi]`` rows). The runtime-checkable protocols test only that the
members exist (Python's ``runtime_checkable`` cannot see signatures); shapes are the contract below.

- :class:`RadianceFieldLike`: ``density(x [N, 3]) -> [N]``, ``rgb(x [N, 3], d [N, 3]) -> [N, 3]``,
  ``aabb [6]``; ``forward(x, d) -> (rgb, sigma)`` (:class:`~omnifield.fields.RadianceField`,
  :class:`~omnifield.fields.gaussians.GaussianScene`).
- :class:`PointFeatureFieldLike`: a radiance field in the shared feature space that distillation
  matches: ``point_features``, ``density_from_features``, ``rgb_from_features``, ``color_decoder``.
- :class:`SDFFieldLike`: ``sdf(x [N, 3]) -> [N]`` in world units, ``aabb [6]``.
- :class:`ImageFieldLike`: ``uv [N, 2] in [0, 1]^2 -> rgb [N, 3]`` (static typing only: every module is
  callable, so there is nothing for ``isinstance`` to test).
- :class:`BoxUnknownLike`: the unknown of a PDE over a box: ``forward(x [N, D]) -> [N, C]``,
  ``box`` (:class:`~omnifield.fields.box.BoxMapping`, whose ``scale`` is ``ds/dx`` for derivative code)
  and ``features(x) -> (h [N, F], s [N, D])``, the decoder input and the unit-cube coordinates.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from omnifield.fields.box import BoxMapping


@runtime_checkable
class RadianceFieldLike(Protocol):
    """Density and view-dependent colour at points of a box (see the module docstring for shapes)."""

    aabb: torch.Tensor  # [6]

    def density(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3] -> [N]
        ...

    def rgb(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:  # [N, 3], [N, 3] -> [N, 3]
        ...


@runtime_checkable
class PointFeatureFieldLike(RadianceFieldLike, Protocol):
    """A radiance field whose colour head reads per-point features ``[N, 1 + G]`` (density logit first)."""

    color_decoder: torch.nn.Module

    def point_features(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3] -> [N, 1 + G]
        ...

    def density_from_features(self, feats: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # -> [N]
        ...

    def rgb_from_features(self, feats: torch.Tensor, d: torch.Tensor) -> torch.Tensor:  # -> [N, 3]
        ...


@runtime_checkable
class SDFFieldLike(Protocol):
    """Signed distance (negative inside) at points of a box."""

    aabb: torch.Tensor  # [6]

    def sdf(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3] -> [N]
        ...


class ImageFieldLike(Protocol):
    """``uv [N, 2]`` (``((col + 0.5)/W, (row + 0.5)/H)``) -> ``rgb [N, 3]`` in [0, 1]."""

    def __call__(self, uv: torch.Tensor) -> torch.Tensor:
        ...


@runtime_checkable
class BoxUnknownLike(Protocol):
    """The unknown of a PDE: ``forward(x [N, D]) -> [N, C]`` on a box, with the pieces derivative code uses."""

    box: BoxMapping

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # -> h [N, F], s [N, D]
        ...
