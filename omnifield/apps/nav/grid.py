"""Voxel grids of a field: density samples, occupancy, and the Euclidean signed-distance field (ESDF)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from omnifield.fields.protocol import RadianceFieldLike


@dataclass
class GridSpec:
    """A regular grid of ``shape`` cells over the box ``bounds = (xmin, ymin, zmin, xmax, ymax, zmax)``."""

    bounds: tuple
    shape: tuple

    def __post_init__(self):
        lo, hi = np.asarray(self.bounds[:3], float), np.asarray(self.bounds[3:], float)
        if len(self.bounds) != 6 or not (hi > lo).all():
            raise ValueError(f"bounds must be (xmin, ymin, zmin, xmax, ymax, zmax) with max > min, got {self.bounds}")
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"grid shape must be three positive ints, got {self.shape}")

    @classmethod
    def with_voxel_size(cls, bounds: tuple, voxel_size: float) -> "GridSpec":
        """The grid over ``bounds`` whose cells are about ``voxel_size`` wide (at least one cell per axis)."""
        extent = np.asarray(bounds[3:], float) - np.asarray(bounds[:3], float)
        return cls(tuple(float(b) for b in bounds), tuple(int(n) for n in np.maximum(1, np.round(extent / voxel_size))))

    @property
    def voxel_size(self) -> np.ndarray:
        """Cell size per axis ``[3]``."""
        return (np.asarray(self.bounds[3:], float) - np.asarray(self.bounds[:3], float)) / np.asarray(self.shape)

    def centers(self) -> np.ndarray:
        """World coordinates ``[X, Y, Z, 3]`` of the cell centres."""
        axes = [self.bounds[i] + (np.arange(n) + 0.5) * self.voxel_size[i] for i, n in enumerate(self.shape)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """Integer cell indices ``[..., 3]`` (clamped into the grid) of world points ``[..., 3]``."""
        ijk = np.floor((np.asarray(points, float) - np.asarray(self.bounds[:3])) / self.voxel_size).astype(np.int64)
        return np.clip(ijk, 0, np.asarray(self.shape) - 1)

    def to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Cell-centre world coordinates ``[..., 3]`` of integer indices ``[..., 3]``."""
        return np.asarray(self.bounds[:3]) + (np.asarray(ijk, float) + 0.5) * self.voxel_size


@torch.no_grad()
def sample_density(field: RadianceFieldLike, spec: GridSpec, supersample: int = 2, chunk: int = 1 << 16) -> np.ndarray:
    """Maximum density ``[X, Y, Z]`` over ``supersample^3`` stratified points in each cell of ``spec``."""
    centers = torch.from_numpy(spec.centers().reshape(-1, 3)).float()
    offs = (torch.arange(supersample, dtype=torch.float32) + 0.5) / supersample - 0.5
    sub = torch.stack(torch.meshgrid(offs, offs, offs, indexing="ij"), -1).reshape(-1, 3)
    sub = sub * torch.from_numpy(spec.voxel_size).float()
    out = torch.empty(centers.shape[0])
    step = max(1, chunk // sub.shape[0])
    for start in range(0, centers.shape[0], step):
        pts = centers[start : start + step, None, :] + sub
        out[start : start + step] = field.density(pts).amax(dim=-1).float()
    return out.reshape(spec.shape).numpy()


def occupancy_from_density(density: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean occupancy ``[X, Y, Z]``: cells whose density exceeds ``threshold``."""
    return np.asarray(density) > threshold


def signed_distance(occupied: np.ndarray, voxel_size: np.ndarray) -> np.ndarray:
    """Euclidean signed distance ``[X, Y, Z]`` (world units) between cell centres and the occupied set.

    Positive in free space (distance to the nearest occupied cell centre), negative inside obstacles
    (minus the distance to the nearest free cell centre). With no obstacles every cell is ``+inf``.
    """
    occupied = np.asarray(occupied, bool)
    if not occupied.any():
        return np.full(occupied.shape, np.inf)
    if occupied.all():
        return np.full(occupied.shape, -np.inf)
    outside = ndimage.distance_transform_edt(~occupied, sampling=voxel_size)
    inside = ndimage.distance_transform_edt(occupied, sampling=voxel_size)
    return outside - inside
