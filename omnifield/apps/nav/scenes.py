"""Analytic worlds: density and colour in closed form from signed distances to spheres and boxes.

Density is ``sigma_max * sigmoid(-sdf(x) / softness)`` where ``sdf`` is the distance to the nearest
primitive (negative inside); colour is the nearest primitive's colour modulated by a smooth procedural
texture (so a camera sees features to align against). Any radiance field
(:class:`~omnifield.fields.protocol.RadianceFieldLike`) works with the navigation code; these are the
exactly-known ones used by tests, the benchmark and the demo world (they are SDF fields too).
"""

from __future__ import annotations

import torch
from torch import nn

# Fixed wave vectors and phases of the procedural texture (world units^-1).
_TEXTURE_WAVES = torch.tensor([[7.0, 3.0, 2.0], [-2.5, 6.5, 4.0], [3.5, -4.0, 7.5], [11.0, 9.0, -6.0]])
_TEXTURE_PHASES = torch.tensor([0.3, 1.7, 2.9, 0.8])


def sphere_sdf(x: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Signed distances ``[..., K]`` of points ``x [..., 3]`` to spheres ``centers [K, 3]``, ``radii [K]``."""
    return (x[..., None, :] - centers).norm(dim=-1) - radii


def box_sdf(x: torch.Tensor, centers: torch.Tensor, half_sizes: torch.Tensor) -> torch.Tensor:
    """Signed distances ``[..., K]`` of points ``x [..., 3]`` to axis-aligned boxes ``[K, 3]``, ``[K, 3]``."""
    q = (x[..., None, :] - centers).abs() - half_sizes
    return q.clamp_min(0.0).norm(dim=-1) + q.amax(dim=-1).clamp_max(0.0)


def procedural_texture(x: torch.Tensor) -> torch.Tensor:
    """Smooth pattern in ``[0, 1]`` at points ``[..., 3]`` -> ``[...]``."""
    waves = torch.sin(x @ _TEXTURE_WAVES.to(x).T + _TEXTURE_PHASES.to(x))
    return 0.5 + 0.5 * waves.mean(dim=-1)


class AnalyticScene(nn.Module):
    """Union of spheres and axis-aligned boxes with closed-form density and colour.

    - ``sdf(x [..., 3]) -> [...]`` signed distance to the union
    - ``density(x [..., 3]) -> [...]``
    - ``forward(x [..., 3], d [..., 3]) -> (rgb [..., 3], sigma [...])`` (colour ignores ``d``), ``rgb(x, d)``
    - ``aabb [6]``: ``bounds``
    """

    def __init__(
        self,
        sphere_centers: torch.Tensor | None = None,  # [S, 3]
        sphere_radii: torch.Tensor | None = None,  # [S]
        box_centers: torch.Tensor | None = None,  # [B, 3]
        box_half_sizes: torch.Tensor | None = None,  # [B, 3]
        colors: torch.Tensor | None = None,  # [S + B, 3] spheres first
        sigma_max: float = 200.0,
        softness: float = 0.01,
        bounds: tuple = (-2.0, -2.0, -2.0, 2.0, 2.0, 2.0),
    ):
        super().__init__()
        f = lambda t, shape: torch.zeros(shape) if t is None else torch.as_tensor(t, dtype=torch.float32).reshape(shape)  # noqa: E731
        n_s = 0 if sphere_centers is None else len(sphere_centers)
        n_b = 0 if box_centers is None else len(box_centers)
        if n_s + n_b == 0:
            raise ValueError("an analytic scene needs at least one sphere or box")
        self.register_buffer("sphere_centers", f(sphere_centers, (n_s, 3)))
        self.register_buffer("sphere_radii", f(sphere_radii, (n_s,)))
        self.register_buffer("box_centers", f(box_centers, (n_b, 3)))
        self.register_buffer("box_half_sizes", f(box_half_sizes, (n_b, 3)))
        default_colors = torch.rand(n_s + n_b, 3, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.2
        self.register_buffer("colors", default_colors if colors is None else f(colors, (n_s + n_b, 3)))
        self.register_buffer("bounds", torch.tensor(bounds, dtype=torch.float32))
        self.sigma_max = float(sigma_max)
        self.softness = float(softness)

    def primitive_sdf(self, x: torch.Tensor) -> torch.Tensor:
        """Signed distance ``[..., S + B]`` to every primitive (spheres first)."""
        return torch.cat(
            [sphere_sdf(x, self.sphere_centers.to(x), self.sphere_radii.to(x)),
             box_sdf(x, self.box_centers.to(x), self.box_half_sizes.to(x))],
            dim=-1,
        )

    @property
    def aabb(self) -> torch.Tensor:
        """``bounds [6]``, the box of the scene as a field (RadianceFieldLike, SDFFieldLike)."""
        return self.bounds

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self.primitive_sdf(x).amin(dim=-1)

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigma_max * torch.sigmoid(-self.sdf(x) / self.softness)

    def rgb(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return self(x, d)[0]

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.primitive_sdf(x)
        sdf, nearest = dist.min(dim=-1)
        rgb = self.colors.to(x)[nearest] * (0.25 + 0.75 * procedural_texture(x))[..., None]
        return rgb, self.sigma_max * torch.sigmoid(-sdf / self.softness)


def pillar_room(size: float = 4.0, height: float = 2.0, n_pillars: int = 5, seed: int = 0) -> AnalyticScene:
    """A walled room (floor, four walls) on ``[-size/2, size/2]^2 x [0, height]`` with square pillars.

    Pillars are placed pseudo-randomly (``seed``) away from the four corners (+-0.8, +-0.8) of the
    unit-scaled room, which are good start/goal points.
    """
    half, t = size / 2, 0.1
    g = torch.Generator().manual_seed(seed)
    walls_c = [[0, 0, -t], [half + t, 0, height / 2], [-half - t, 0, height / 2], [0, half + t, height / 2], [0, -half - t, height / 2]]
    walls_h = [[half + t, half + t, t], [t, half, height / 2], [t, half, height / 2], [half, t, height / 2], [half, t, height / 2]]
    pillars = []
    for _ in range(1000):
        if len(pillars) == n_pillars:
            break
        p = (torch.rand(2, generator=g) * 2 - 1) * 0.65 * half
        corners = ([-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0])
        far_from_corners = min((p - torch.tensor(c) * half * 0.8).norm() for c in corners) > 0.9
        if far_from_corners and all((p - q).norm() > 0.7 for q in pillars):
            pillars.append(p)
    if len(pillars) < n_pillars:
        raise ValueError(f"could not place {n_pillars} pillars apart in a {size} m room")
    pillar_c = [[float(p[0]), float(p[1]), height / 2] for p in pillars]
    pillar_h = [[0.15, 0.15, height / 2]] * n_pillars
    colors = torch.rand(len(walls_c) + n_pillars, 3, generator=g) * 0.7 + 0.3
    return AnalyticScene(
        box_centers=torch.tensor(walls_c + pillar_c),
        box_half_sizes=torch.tensor(walls_h + pillar_h),
        colors=colors,
        bounds=(-half, -half, 0.0, half, half, height),
    )
