"""Gaussian splatting: EWA projection, tile binning, front-to-back blending (CPU native + torch twin, CUDA via gsplat)."""

from omnifield.renderers.splat.binning import intersect_tiles, tile_grid
from omnifield.renderers.splat.projection import project_gaussians, project_splats, viewmat_from_c2w_opengl
from omnifield.renderers.splat.rasterize import rasterize_to_pixels
from omnifield.renderers.splat.renderer import SplatRenderer

__all__ = [
    "SplatRenderer",
    "intersect_tiles",
    "project_gaussians",
    "project_splats",
    "rasterize_to_pixels",
    "tile_grid",
    "viewmat_from_c2w_opengl",
]
