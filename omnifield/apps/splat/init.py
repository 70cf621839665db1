"""Initial Gaussians: random points in the scene box, points on training rays between per-view depth bounds
(coloured by their pixels), or a trained radiance field's density (points sampled where the field is dense,
coloured by the field). Point clouds from files are read by :func:`omnifield.io.points.read_point_cloud`."""

from __future__ import annotations

import torch

from omnifield.errors import OmnifieldError


def random_points(n: int, aabb: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uniform points ``[n, 3]`` in ``aabb [6]`` with random colours ``[n, 3]``."""
    lo, hi = aabb[:3], aabb[3:]
    return lo + (hi - lo) * torch.rand(n, 3, generator=generator), torch.rand(n, 3, generator=generator)


@torch.no_grad()
def points_from_views(images: torch.Tensor, cameras, near_far: torch.Tensor, n: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points ``[n, 3]`` on random pixels' rays of ``images [V, H, W, C]``, at z-depths uniform in
    disparity between the view's ``near_far [V, 2]`` bounds, coloured by their pixels ``[n, 3]``."""
    v, h, w = images.shape[:3]
    view = torch.randint(0, v, (n,), generator=generator)
    row = torch.randint(0, h, (n,), generator=generator)
    col = torch.randint(0, w, (n,), generator=generator)
    near, far = near_far[view, 0].float(), near_far[view, 1].float()
    t = torch.rand(n, generator=generator)
    depth = 1.0 / (t / far + (1.0 - t) / near)
    x = (col + 0.5 - cameras.cx[view]) / cameras.fx[view]
    y = -(row + 0.5 - cameras.cy[view]) / cameras.fy[view]  # OpenGL: y up, looking down -z
    local = torch.stack([x, y, -torch.ones_like(x)], -1) * depth[:, None]
    c2w = cameras.c2w[view].float()
    pts = (c2w[:, :3, :3] @ local[:, :, None])[:, :, 0] + c2w[:, :3, 3]
    return pts, images[view, row, col, :3].float()


@torch.no_grad()
def points_from_density(field, n: int, generator: torch.Generator, n_candidates: int = 1 << 18,
                        chunk: int = 1 << 15) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points where a radiance field is dense, with its colour seen from outside (toward the centre).

    Candidates are uniform in ``field.aabb``; points are drawn with probability proportional to
    ``1 - exp(-sigma * delta)`` (``delta`` = 1/256 of the box diagonal), so empty space is never chosen.
    """
    aabb = field.aabb.float().cpu()
    lo, hi = aabb[:3], aabb[3:]
    cand = lo + (hi - lo) * torch.rand(n_candidates, 3, generator=generator)
    sigma = torch.cat([field.density(cand[i : i + chunk]).float().reshape(-1) for i in range(0, len(cand), chunk)])
    delta = float((hi - lo).norm()) / 256
    weight = 1.0 - torch.exp(-sigma.clamp_min(0) * delta)
    if float(weight.sum()) <= 0:
        raise OmnifieldError("the radiance field is empty everywhere in its box; cannot initialise Gaussians from it")
    pick = torch.multinomial(weight, min(n, int((weight > 0).sum())), replacement=False, generator=generator)
    pts = cand[pick]
    centre = 0.5 * (lo + hi)
    dirs = centre - pts
    colors = torch.cat([field(pts[i : i + chunk], dirs[i : i + chunk])[0].float() for i in range(0, len(pts), chunk)])
    return pts, colors.clamp(0, 1)
