"""Point clouds: sampled where a field is dense, written as coloured .ply, read from .ply or COLMAP points3D.txt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from omnifield.errors import OmnifieldError
from omnifield.io.atomic import atomic_path
from omnifield.io.mesh import ColorFn, DensityFn

AXIS_DIRECTIONS = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])


@torch.no_grad()
def sample_dense_points(density: DensityFn, aabb: torch.Tensor, n_points: int, threshold: float = 10.0,
                        color: ColorFn | None = None, resolution: int = 128, chunk: int = 65536,
                        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Up to ``n_points`` points ``[P, 3]`` with ``density > threshold`` and their colours ``[P, 3]``.

    Candidates are jittered inside the voxels of a ``resolution^3`` grid whose centre is dense; the colour is
    the radiance averaged over the six axis view directions.
    """
    gen = torch.Generator().manual_seed(seed)
    lo, hi = aabb[:3], aabb[3:]
    voxel = (hi - lo) / resolution
    axes = [lo[i] + (torch.arange(resolution) + 0.5) * voxel[i] for i in range(3)]
    centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    dense = torch.cat([density(centres[i:i + chunk]).reshape(-1) > threshold for i in range(0, len(centres), chunk)])
    occupied = centres[dense]
    if len(occupied) == 0:
        raise OmnifieldError(f"no point of the field has density above {threshold} (choose a lower --threshold)")
    picks = occupied[torch.randint(len(occupied), (2 * n_points,), generator=gen)]
    x = picks + (torch.rand(picks.shape, generator=gen) - 0.5) * voxel
    keep = torch.cat([density(x[i:i + chunk]).reshape(-1) > threshold for i in range(0, len(x), chunk)])
    x = x[keep][:n_points]
    if color is None:
        return x, None
    rgb = torch.zeros_like(x)
    for d in AXIS_DIRECTIONS:
        rgb += torch.cat([color(x[i:i + chunk], d.expand(len(x[i:i + chunk]), 3)) for i in range(0, len(x), chunk)])
    return x, (rgb / len(AXIS_DIRECTIONS)).clamp(0, 1)


def save_points_ply(path: str | Path, xyz: np.ndarray, rgb: np.ndarray | None = None) -> Path:
    """Atomically write ``xyz [P, 3]`` (float32) and optional ``rgb [P, 3]`` in [0, 1] as a binary .ply."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    if path.suffix.lower() != ".ply":
        raise OmnifieldError(f"{path}: point clouds are written as .ply")
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if rgb is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(len(xyz), dtype=fields)
    vertex["x"], vertex["y"], vertex["z"] = np.asarray(xyz, dtype=np.float32).T
    if rgb is not None:
        colours = (np.clip(np.asarray(rgb), 0, 1) * 255 + 0.5).astype(np.uint8)
        vertex["red"], vertex["green"], vertex["blue"] = colours.T
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp))
    return path


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
    names = {p.name for p in vertex.properties}
    colors = None
    if {"red", "green", "blue"} <= names:
        rgb = np.stack([np.asarray(vertex[k], dtype=np.float32) for k in ("red", "green", "blue")], 1)
        colors = torch.from_numpy(rgb / (255.0 if rgb.max() > 1.0 else 1.0))
    if len(xyz) == 0:
        raise OmnifieldError(f"{path}: point cloud is empty (0 vertices)")
    return _finite(torch.from_numpy(xyz), path), colors


def _finite(xyz: torch.Tensor, path: Path) -> torch.Tensor:
    """``xyz [N, 3]`` itself, refused when a coordinate is NaN or Inf."""
    bad = int((~torch.isfinite(xyz).all(1)).sum())
    if bad:
        raise OmnifieldError(f"{path}: {bad} of {len(xyz)} points have NaN or Inf coordinates")
    return xyz
