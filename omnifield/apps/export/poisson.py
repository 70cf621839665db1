"""Screened Poisson meshing (open3d) of a density field: oriented points on its iso-surface -> watertight mesh.

Marching cubes follows the density grid cell by cell; Poisson fits one smooth indicator function to oriented
points, which closes small holes and smooths the grid's noise. The points are jittered in the cells of a
``resolution^3`` grid that straddle the iso-surface (dense, with a non-dense face neighbour), so they lie
within a cell of it; their normals are the density's negative gradient (outward), so no orientation step is
needed. open3d is the optional extra ``omnifield[mesh]``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from omnifield.errors import OmnifieldError
from omnifield.io.mesh import ColorFn, DensityFn, density_grid, remove_floaters
from omnifield.io.progress import counting_progress

TRIM_QUANTILE = 0.02  # drop the Poisson vertices least supported by points (open3d's densities)


def require_open3d():
    """The ``open3d`` module, or a one-line error naming the extra that installs it."""
    try:
        import open3d
    except ImportError:
        raise OmnifieldError("--method poisson needs open3d: pip install 'omnifield[mesh]'") from None
    return open3d


def outward_normals(density: DensityFn, x: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Unit normals ``[P, 3]`` at points ``x [P, 3]``: the normalised negative density gradient."""
    out = []
    for i in range(0, len(x), chunk):
        with torch.enable_grad():
            xi = x[i:i + chunk].clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(density(xi).sum(), xi)
        out.append(-grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    return torch.cat(out)


def surface_points(density: DensityFn, aabb: torch.Tensor, threshold: float, resolution: int, n_points: int,
                   seed: int = 0) -> torch.Tensor:
    """Up to ``n_points`` points ``[P, 3]`` with density above ``threshold`` in the cells of a
    ``resolution^3`` grid over ``aabb [6]`` that are dense and touch a non-dense cell."""
    lo, hi = aabb[:3], aabb[3:]
    voxel = (hi - lo) / resolution
    dense = density_grid(density, torch.cat([lo + voxel / 2, hi - voxel / 2]), resolution) > threshold
    shell = dense & ~ndimage.binary_erosion(dense, border_value=0)
    cells = torch.from_numpy(np.argwhere(shell)).float()
    if len(cells) == 0:
        raise OmnifieldError(f"no cell of the field has density above {threshold:.4g} (choose a lower --threshold)")
    gen = torch.Generator().manual_seed(seed)
    picks = cells[torch.randint(len(cells), (2 * n_points,), generator=gen)]
    x = lo + (picks + torch.rand(picks.shape, generator=gen)) * voxel
    keep = torch.cat([density(x[i:i + 65536]).reshape(-1) > threshold for i in range(0, len(x), 65536)])
    return x[keep][:n_points]


def poisson_mesh(density: DensityFn, aabb: torch.Tensor, threshold: float, color: ColorFn | None, n_points: int,
                 resolution: int, depth: int, min_component: float = 0.05, quiet: bool = False):
    """Screened Poisson mesh (``trimesh.Trimesh``, box units) of the iso-surface ``density == threshold``
    inside ``aabb [6]``, from ``n_points`` oriented surface points; vertex colours from ``color`` seen head-on."""
    import trimesh

    o3d = require_open3d()
    with counting_progress(density, resolution**3 + 2 * n_points, "surface points", quiet) as counted, \
            torch.no_grad():
        x = surface_points(counted, aabb, threshold, resolution, n_points)
    normals = outward_normals(density, x)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(x.double().numpy()))
    pcd.normals = o3d.utility.Vector3dVector(normals.double().numpy())
    mesh, support = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=depth)
    mesh.remove_vertices_by_mask(np.asarray(support) < np.quantile(np.asarray(support), TRIM_QUANTILE))
    lo, hi = aabb[:3].double().numpy(), aabb[3:].double().numpy()
    mesh = mesh.crop(o3d.geometry.AxisAlignedBoundingBox(lo, hi))
    out = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.triangles), process=True)
    if len(out.faces) == 0:
        raise OmnifieldError("Poisson reconstruction gave an empty mesh (try more --n-points or a lower --depth)")
    out = remove_floaters(out, min_component)
    if color is not None:
        v = torch.from_numpy(np.asarray(out.vertices, dtype=np.float32))
        d = -torch.from_numpy(np.asarray(out.vertex_normals, dtype=np.float32))
        with torch.no_grad():
            rgb = torch.cat([color(v[i:i + 65536], d[i:i + 65536]) for i in range(0, len(v), 65536)])
        out.visual.vertex_colors = (rgb.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    return out
