"""Meshes from density fields: marching cubes (scikit-image) -> trimesh, floater removal, atomic export."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from omnifield.errors import OmnifieldError
from omnifield.io.atomic import atomic_path

MESH_FORMATS = (".ply", ".obj", ".glb")
DensityFn = Callable[[torch.Tensor], torch.Tensor]  # [N, 3] -> [N]
ColorFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # points [N, 3], view dirs [N, 3] -> rgb [N, 3]


@torch.no_grad()
def density_grid(density: DensityFn, aabb: torch.Tensor, resolution: int, chunk: int = 65536) -> np.ndarray:
    """``density`` at the ``resolution^3`` lattice spanning ``aabb [6]`` (corners included): ``[R, R, R]``."""
    axes = [torch.linspace(float(aabb[i]), float(aabb[i + 3]), resolution) for i in range(3)]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    values = torch.cat([density(points[i:i + chunk]).reshape(-1).float() for i in range(0, len(points), chunk)])
    return values.reshape(resolution, resolution, resolution).numpy()


def remove_floaters(mesh, min_fraction: float = 0.05):
    """Keep the connected components holding at least ``min_fraction`` of the largest one's faces."""
    import trimesh

    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    largest = max(len(p.faces) for p in parts)
    return trimesh.util.concatenate([p for p in parts if len(p.faces) >= min_fraction * largest])


@torch.no_grad()
def extract_mesh(density: DensityFn, aabb: torch.Tensor, resolution: int = 128, threshold: float = 10.0,
                 color: ColorFn | None = None, min_component: float = 0.05, chunk: int = 65536):
    """Iso-surface ``density == threshold`` inside ``aabb [6]`` as a ``trimesh.Trimesh``.

    With ``color``, vertex colours are the field's radiance seen head-on (view direction = -normal).
    Components smaller than ``min_component`` x the largest are dropped as floaters.
    """
    import trimesh
    from skimage.measure import marching_cubes

    grid = density_grid(density, aabb, resolution, chunk)
    if not grid.min() < threshold < grid.max():
        raise OmnifieldError(f"density threshold {threshold} is outside the field's range "
                             f"[{grid.min():.3g}, {grid.max():.3g}]: no surface (choose another --threshold)")
    lo, hi = aabb[:3].numpy(), aabb[3:].numpy()
    spacing = (hi - lo) / (resolution - 1)
    verts, faces, _, _ = marching_cubes(grid, level=threshold, spacing=tuple(spacing))
    # marching_cubes orients faces towards increasing values (the inside); flip them to point outwards
    mesh = trimesh.Trimesh(verts + lo, faces[:, ::-1], process=True)
    mesh = remove_floaters(mesh, min_component)
    if color is not None:
        x = torch.from_numpy(np.asarray(mesh.vertices, dtype=np.float32))
        d = -torch.from_numpy(np.asarray(mesh.vertex_normals, dtype=np.float32))
        rgb = torch.cat([color(x[i:i + chunk], d[i:i + chunk]) for i in range(0, len(x), chunk)])
        mesh.visual.vertex_colors = (rgb.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    return mesh


def save_mesh(mesh, path: str | Path) -> Path:
    """Atomically write ``mesh`` as .ply, .obj or .glb (chosen by the suffix), vertex colours included."""
    path = Path(path)
    if path.suffix.lower() not in MESH_FORMATS:
        raise OmnifieldError(f"{path}: unsupported mesh format (use {', '.join(MESH_FORMATS)})")
    with atomic_path(path) as tmp:
        mesh.export(tmp, file_type=path.suffix.lower()[1:])
    return path
