"""Initial Gaussians: random points in the scene box, a point cloud (PLY / COLMAP points3D.txt), or a trained
radiance field's density (points sampled where the field is dense, coloured by the field)."""

from __future__ import annotations

from pathlib import Path

import torch

from omnifield.errors import OmnifieldError


def random_points(n: int, aabb: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uniform points ``[n, 3]`` in ``aabb [6]`` with random colours ``[n, 3]``."""
    lo, hi = aabb[:3], aabb[3:]
    return lo + (hi - lo) * torch.rand(n, 3, generator=generator), torch.rand(n, 3, generator=generator)


def read_point_cloud(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Points ``[N, 3]`` and colours ``[N, 3]`` (or None) from a ``.ply`` or COLMAP ``points3D.txt``."""
    path = Path(path)
    if not path.is_file():
        raise OmnifieldError(f"{path}: point cloud not found")
    if path.suffix.lower() == ".txt":
        rows = []
        for i, line in enumerate(path.read_text().splitlines()):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split()
            try:
                rows.append([float(v) for v in parts[1:7]])
            except ValueError:
                raise OmnifieldError(f"{path}:{i + 1}: expected 'ID X Y Z R G B ...' (COLMAP points3D.txt)") from None
        if not rows or any(len(r) != 6 for r in rows):
            raise OmnifieldError(f"{path}: no COLMAP points (lines 'ID X Y Z R G B ERROR TRACK...')")
        data = torch.tensor(rows, dtype=torch.float32)
        return data[:, :3], data[:, 3:] / 255.0
    from omnifield.io.points import read_points_ply

    xyz, rgb = read_points_ply(path)
    return torch.from_numpy(xyz), None if rgb is None else torch.from_numpy(rgb)


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
