"""Initial Gaussians: random points in the scene box, a point cloud (PLY / COLMAP points3D.txt), or a trained
radiance field's density (points sampled where the field is dense, coloured by the field)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError:
            raise OmnifieldError(f"{path}: not a text file; expected COLMAP points3D.txt (for points3D.bin, "
                                 "convert the model to text or give a .ply)") from None
        rows = []
        for i, line in enumerate(lines):
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
        return _finite(data[:, :3], path), data[:, 3:] / 255.0
    from plyfile import PlyData

    try:
        vertex = PlyData.read(str(path))["vertex"]
        xyz = np.stack([np.asarray(vertex[k], dtype=np.float32) for k in ("x", "y", "z")], 1)
    except Exception as exc:  # noqa: BLE001 - plyfile raises several types
        raise OmnifieldError(f"{path}: not a point-cloud .ply with x, y, z vertices ({exc})") from None
    if len(xyz) == 0:
        raise OmnifieldError(f"{path}: point cloud is empty (0 vertices)")
    names = {p.name for p in vertex.properties}
    colors = None
    if {"red", "green", "blue"} <= names:
        rgb = np.stack([np.asarray(vertex[k], dtype=np.float32) for k in ("red", "green", "blue")], 1)
        colors = torch.from_numpy(rgb / (255.0 if rgb.max() > 1.0 else 1.0))
    return _finite(torch.from_numpy(xyz), path), colors


def _finite(xyz: torch.Tensor, path: Path) -> torch.Tensor:
    """``xyz [N, 3]`` itself, refused when a coordinate is NaN or Inf."""
    bad = int((~torch.isfinite(xyz).all(1)).sum())
    if bad:
        raise OmnifieldError(f"{path}: {bad} of {len(xyz)} points have NaN or Inf coordinates")
    return xyz


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
