"""Field -> regular grid of (RGB, opacity), the input of NeRF-MAE; stored as compressed ``.npz``.

Any object with ``density(x [N, 3]) -> [N]`` and ``forward(x [N, 3], d [N, 3]) -> (rgb [N, 3], sigma [N])``
(every :class:`RadianceField`, the analytic :class:`SceneField`) can be sampled:

- voxel centres of a grid whose longest side has ``resolution`` cells inside ``aabb``;
- ``sigma`` and colour averaged over ``supersample^3`` sub-voxel points (colour weighted by ``sigma``);
- colour averaged over view directions: towards each voxel from the training cameras
  (``view_origins [K, 3]``) or, without cameras, over fixed ``view_dirs [K, 3]``, by default the 14
  symmetric directions (6 axes + 8 cube diagonals, whose mean is exactly zero);
- opacity ``alpha = 1 - exp(-sigma * delta)`` (``delta`` = 0.01 as in NeRF-MAE).

Example::

    grid = sample_field_grid(field, aabb=(-1.5,) * 3 + (1.5,) * 3, resolution=32)
    save_grid(grid, "room.npz"); grid = load_grid("room.npz")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from omnifield.errors import OmnifieldError
from omnifield.io.atomic import atomic_path
from omnifield.metrics import psnr_from_mse


@dataclass
class RadianceGrid:
    """``rgba [4, X, Y, Z]`` float32 (RGB then alpha) on voxel centres of ``aabb``; optional voxel
    ``labels [X, Y, Z]`` (int64 class ids) and oriented ``boxes [M, 7]`` + ``box_labels [M]``."""

    rgba: np.ndarray
    aabb: tuple
    labels: np.ndarray | None = None
    boxes: np.ndarray | None = None
    box_labels: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def grid_shape(aabb, resolution: int) -> tuple[int, int, int]:
    """Cells per axis: the longest side of ``aabb`` gets ``resolution``, the others proportionally."""
    lo, hi = np.asarray(aabb[:3], float), np.asarray(aabb[3:], float)
    if resolution < 1 or np.any(hi <= lo):
        raise OmnifieldError(f"grid needs resolution >= 1 and a box with max > min, got {resolution}, {aabb}")
    ext = hi - lo
    return tuple(max(1, int(round(resolution * e / ext.max()))) for e in ext)


def voxel_centers(aabb, shape, supersample: int = 1) -> torch.Tensor:
    """Sample points ``[X*Y*Z, S^3, 3]``: ``S = supersample`` evenly spaced sub-points per voxel and axis."""
    lo, hi = torch.tensor(aabb[:3], dtype=torch.float32), torch.tensor(aabb[3:], dtype=torch.float32)
    step = (hi - lo) / torch.tensor(shape, dtype=torch.float32)
    axes = [torch.arange(n, dtype=torch.float32) for n in shape]
    cells = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 1, 3)
    sub = (torch.arange(supersample, dtype=torch.float32) + 0.5) / supersample
    offs = torch.stack(torch.meshgrid(sub, sub, sub, indexing="ij"), -1).reshape(1, -1, 3)
    return lo + (cells + offs) * step


def symmetric_directions() -> torch.Tensor:
    """``[14, 3]`` unit directions: the 6 axes and the 8 cube diagonals (their mean is zero)."""
    axes = torch.cat([torch.eye(3), -torch.eye(3)])
    signs = torch.tensor([[sx, sy, sz] for sx in (-1.0, 1.0) for sy in (-1.0, 1.0) for sz in (-1.0, 1.0)])
    return torch.cat([axes, signs / 3**0.5])


@torch.no_grad()
def sample_field_grid(
    field,
    aabb,
    resolution: int = 32,
    delta: float = 0.01,
    supersample: int = 1,
    view_origins: torch.Tensor | None = None,  # [K, 3] camera centres, or None
    view_dirs: torch.Tensor | None = None,  # [K, 3] fixed directions when no cameras (default: 14 symmetric)
    chunk: int = 65536,
) -> RadianceGrid:
    """Sample ``field`` into a :class:`RadianceGrid` (see the module docstring for the rules)."""
    shape = grid_shape(aabb, resolution)
    points = voxel_centers(aabb, shape, supersample).reshape(-1, 3)
    n_sub = supersample**3
    fixed_dirs = None
    if view_origins is None:
        fixed_dirs = symmetric_directions() if view_dirs is None else view_dirs.float()
    sigma_all, rgb_all = [], []
    for start in range(0, points.shape[0], chunk):
        x = points[start : start + chunk]
        if fixed_dirs is None:
            d = x[:, None, :] - view_origins.to(x.dtype)[None]
        else:
            d = fixed_dirs[None].expand(x.shape[0], -1, -1)
        d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        k = d.shape[1]
        rgb, sigma = field(x[:, None, :].expand(-1, k, -1).reshape(-1, 3), d.reshape(-1, 3))
        rgb_all.append(rgb.reshape(-1, k, 3).mean(1).float())
        sigma_all.append(sigma.reshape(-1, k)[:, 0].float())
    sigma = torch.cat(sigma_all).reshape(-1, n_sub)
    rgb = torch.cat(rgb_all).reshape(-1, n_sub, 3)
    weights = sigma / sigma.sum(1, keepdim=True).clamp_min(1e-12)
    rgb = torch.where(sigma.sum(1, keepdim=True) > 0, (weights[..., None] * rgb).sum(1), torch.zeros(1, 3))
    alpha = 1 - torch.exp(-sigma.mean(1) * delta)
    rgba = torch.cat([rgb, alpha[:, None]], 1).T.reshape(4, *shape)
    meta = {"resolution": resolution, "delta": delta, "supersample": supersample}
    return RadianceGrid(rgba=rgba.numpy(), aabb=tuple(float(v) for v in aabb), meta=meta)


def save_grid(grid: RadianceGrid, path) -> Path:
    """Write a compressed ``.npz`` (RGBA as float16), via a temporary file then rename."""
    path = Path(path)
    if path.suffix != ".npz":
        raise OmnifieldError(f"{path}: grid files must end in .npz")
    arrays = {"rgba": grid.rgba.astype(np.float16), "aabb": np.asarray(grid.aabb, np.float32)}
    for name in ("labels", "boxes", "box_labels"):
        value = getattr(grid, name)
        if value is not None:
            arrays[name] = value.astype(np.uint8 if name == "labels" else value.dtype)
    arrays["meta_json"] = np.frombuffer(json.dumps(grid.meta).encode(), np.uint8)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def load_grid(path) -> RadianceGrid:
    """Read a grid written by :func:`save_grid`; :class:`OmnifieldError` if missing or malformed."""
    path = Path(path)
    try:
        data = np.load(path)
        rgba = data["rgba"].astype(np.float32)
        aabb = tuple(float(v) for v in data["aabb"])
        optional = {name: data[name] for name in ("labels", "boxes", "box_labels") if name in data}
        meta = json.loads(data["meta_json"].tobytes().decode()) if "meta_json" in data else {}
    except (OSError, KeyError, ValueError) as exc:
        raise OmnifieldError(f"{path}: not a readable grid file ({exc})") from None
    if rgba.ndim != 4 or rgba.shape[0] != 4:
        raise OmnifieldError(f"{path}: rgba must have shape [4, X, Y, Z], got {list(rgba.shape)}")
    if "labels" in optional:
        optional["labels"] = optional["labels"].astype(np.int64)
    return RadianceGrid(rgba=rgba, aabb=aabb, meta=meta, **optional)


def compare_grids(pred: RadianceGrid, ref: RadianceGrid, solid_alpha: float = 0.5) -> dict:
    """Agreement of two grids of one shape: IoU of solid voxels (alpha > ``solid_alpha``), PSNR of alpha
    over all voxels and of RGB over voxels solid in both (None when there are none)."""
    if pred.rgba.shape != ref.rgba.shape:
        raise OmnifieldError(f"grid shapes differ: {list(pred.rgba.shape)} vs {list(ref.rgba.shape)}")
    a, b = pred.rgba[3] > solid_alpha, ref.rgba[3] > solid_alpha
    both = a & b
    alpha_mse = float(((pred.rgba[3] - ref.rgba[3]) ** 2).mean())
    rgb_psnr = None
    if both.any():
        rgb_psnr = psnr_from_mse(((pred.rgba[:3] - ref.rgba[:3])[:, both] ** 2).mean())
    return {
        "solid_iou": float(both.sum() / max(1, (a | b).sum())),
        "psnr_alpha": psnr_from_mse(alpha_mse),
        "psnr_rgb_solid": rgb_psnr,
    }
