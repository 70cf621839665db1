"""Occupancy/ESDF exports for robot tools: ``.npz`` grids, PLY point clouds, PGM slices (ROS map_server).

Every writer goes through a temporary file in the target folder and renames it into place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from omnifield.apps.nav.grid import GridSpec
from omnifield.errors import OmnifieldError
from omnifield.io.atomic import atomic_path


def _atomic_write(path, write) -> Path:
    """Call ``write(binary_file)`` on a temporary file that then replaces ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def save_grids_npz(path, spec: GridSpec, density: np.ndarray, occupied: np.ndarray, esdf: np.ndarray) -> Path:
    """Write ``density``, ``occupancy``, ``esdf`` ``[X, Y, Z]`` with ``bounds [6]`` and ``voxel_size [3]``."""
    return _atomic_write(
        path,
        lambda f: np.savez_compressed(
            f, density=density.astype(np.float32), occupancy=occupied.astype(np.uint8), esdf=esdf.astype(np.float32),
            bounds=np.asarray(spec.bounds, np.float32), voxel_size=spec.voxel_size.astype(np.float32),
        ),
    )


def load_grids_npz(path) -> tuple[GridSpec, dict[str, np.ndarray]]:
    """Read a file written by :func:`save_grids_npz`: the grid spec and its arrays by name."""
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in ("density", "occupancy", "esdf")}
            bounds = tuple(float(b) for b in data["bounds"])
    except (OSError, KeyError, ValueError) as exc:
        raise OmnifieldError(f"{path}: not a navigation grid file ({exc})") from None
    return GridSpec(bounds, arrays["occupancy"].shape), arrays


def save_occupied_ply(path, spec: GridSpec, occupied: np.ndarray, esdf: np.ndarray) -> Path:
    """PLY point cloud of the occupied cell centres with their signed distance as a ``esdf`` property."""
    idx = np.argwhere(occupied)
    xyz = spec.to_world(idx).astype(np.float32)
    vertex = np.empty(len(idx), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("esdf", "f4")])
    vertex["x"], vertex["y"], vertex["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    vertex["esdf"] = esdf[occupied].astype(np.float32)
    return _atomic_write(path, lambda f: PlyData([PlyElement.describe(vertex, "vertex")]).write(f))


def save_pgm_slice(path, spec: GridSpec, occupied: np.ndarray, height: float) -> tuple[Path, Path]:
    """Occupancy at world height ``height`` as a ROS map_server map: ``path`` (PGM) and ``path.yaml``.

    Occupied cells are black (0), free cells white (254); image rows go from +y (top) to -y.
    Square cells in x and y are required by the map format.
    """
    vs = spec.voxel_size
    if not np.isclose(vs[0], vs[1]):
        raise OmnifieldError(f"{path}: a PGM map needs square cells, got {vs[0]:.4g} x {vs[1]:.4g}")
    k = int(spec.to_index(np.array([0.0, 0.0, height]))[2])
    img = np.where(occupied[:, :, k].T[::-1], 0, 254).astype(np.uint8)  # [Y, X], +y at the top
    header = f"P5\n{img.shape[1]} {img.shape[0]}\n255\n".encode()
    pgm = _atomic_write(path, lambda f: f.write(header + img.tobytes()))
    yaml = (
        f"image: {Path(path).name}\nresolution: {vs[0]:.6g}\n"
        f"origin: [{spec.bounds[0]:.6g}, {spec.bounds[1]:.6g}, 0.0]\n"
        "negate: 0\noccupied_thresh: 0.65\nfree_thresh: 0.196\n"
    )
    meta = _atomic_write(Path(str(path) + ".yaml"), lambda f: f.write(yaml.encode()))
    return pgm, meta
