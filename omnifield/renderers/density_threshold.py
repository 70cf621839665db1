"""Density thresholds for exports (meshes, point clouds, navigation grids), chosen from the run itself.

The rule: Otsu's threshold on ``log10`` density over the cells whose density training measured. The
occupancy grid keeps, per cell, an EMA of ``density * step``; divided by the step, those are the densities of
the cells inside the visual hull (carved cells are never measured, so they are left out). A trained field is
bimodal in log density — transparent space near zero, surfaces at tens to thousands — and Otsu's threshold is
the split between the two modes that maximises the between-class variance. Densities below ``DENSITY_FLOOR``
count as the floor, so the many decades of numerically-zero density form one compact empty mode.

Runs without an occupancy grid (Gaussian splats) are measured by sampling their density at the centres of a
lattice over their box instead; the same rule then splits those samples.

The split is trusted only when the two classes are apart: the geometric mean density of the dense class must be
``MIN_CONTRAST`` times that of the empty one (a field early in training is nearly uniform, and Otsu would cut
it in half). A threshold, chosen or given with ``--threshold``, is refused when it keeps no measured cell or
more than ``MAX_KEPT`` of them: an empty export, or a box that is (nearly) all occupied, helps nobody.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from omnifield.errors import OmnifieldError

DENSITY_FLOOR = 1e-3  # a density that dims a ray by 0.1 % per box unit: transparent
MIN_CONTRAST = 10.0  # dense class / empty class, geometric means
MAX_KEPT = 0.9  # of the measured cells
SUGGEST_KEPT = 0.1  # with no separation, the suggested threshold keeps the densest 10 % of the cells
STATS_RESOLUTION = 64  # lattice sampled when the run's occupancy grid was never refreshed


@dataclass
class Threshold:
    """A density threshold and what it keeps: ``kept`` is the fraction of the ``n_cells`` measured cells
    above it; ``source`` says where it came from ("chosen" by the rule or "given" by the user)."""

    value: float
    kept: float
    n_cells: int
    source: str
    suggestion: float

    def check_kept(self, kept: float, where: str) -> None:
        """Refuse (:class:`OmnifieldError`) an export in which the threshold keeps a fraction ``kept`` of
        the cells described by ``where`` that is 0 (empty) or above ``MAX_KEPT`` ((nearly) all occupied)."""
        if kept == 0:
            raise OmnifieldError(f"density threshold {self.value:.4g} keeps no cell ({where}): the export would be "
                                 f"empty; train longer, or pass a lower --threshold, e.g. {self.suggestion:.4g}")
        if kept > MAX_KEPT:
            raise OmnifieldError(f"density threshold {self.value:.4g} keeps {kept:.0%} of the cells ({where}): the "
                                 f"box would be (nearly) all occupied; train longer, or pass --threshold "
                                 f"{self.suggestion:.4g}")

    def describe(self) -> str:
        """One line for the user, e.g. ``density threshold 4.2 (chosen: ...), keeps 3.1% of 9000 cells``."""
        how = "Otsu split of the log density" if self.source == "chosen" else "--threshold"
        return f"density threshold {self.value:.4g} ({how}) keeps {self.kept:.1%} of {self.n_cells} measured cells"


def otsu_log_density(density: np.ndarray, bins: int = 1024) -> tuple[float, float]:
    """Otsu's threshold on ``log10(max(density, DENSITY_FLOOR))`` of ``density [M]``, as a density, and the
    contrast (ratio of the geometric mean densities above and below it; 1 when all values are equal).

    Between-class variance ``w0 w1 (m0 - m1)^2`` over the cuts between histogram bins; where several cuts
    tie (an empty gap between the modes: scikit-image's ``threshold_otsu`` takes the first, at the foot of
    the empty mode), the cut is the middle of the gap.
    """
    logd = np.log10(np.maximum(np.asarray(density, np.float64).reshape(-1), DENSITY_FLOOR))
    if logd.max() - logd.min() < 1e-9:
        return float(10 ** logd[0]), 1.0
    hist, edges = np.histogram(logd, bins=bins)
    centres = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)[:-1].astype(np.float64)
    s0 = np.cumsum(hist * centres)[:-1]
    w1, s1 = w0[-1] + hist[-1] - w0, s0[-1] + hist[-1] * centres[-1] - s0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.where((w0 > 0) & (w1 > 0), w0 * w1 * (s0 / w0 - s1 / w1) ** 2, -1.0)
    ties = np.flatnonzero(between == between.max())
    cut = 0.5 * (edges[ties[0] + 1] + edges[ties[-1] + 1])
    above = logd > cut
    return float(10**cut), float(10 ** (logd[above].mean() - logd[~above].mean()))


def choose_threshold(density: np.ndarray, given: float | None = None) -> Threshold:
    """The export threshold for measured cell densities ``density [M]``: ``given`` when not None, else the
    Otsu split (module doc). Raises :class:`OmnifieldError` with a suggested ``--threshold`` when there is no
    separation (rule only) or when the threshold keeps no cell or more than ``MAX_KEPT`` of them."""
    density = np.asarray(density, np.float64).reshape(-1)
    if density.size == 0:
        raise OmnifieldError("the run's occupancy grid has no measured cell: train it first")
    otsu, contrast = otsu_log_density(density)
    separated = contrast >= MIN_CONTRAST
    suggestion = otsu if separated else float(np.quantile(density, 1 - SUGGEST_KEPT))
    where = f"{density.size} measured cells, densities {density.min():.3g} to {density.max():.3g}"
    if given is None and not separated:
        raise OmnifieldError(f"the field has no empty/occupied separation yet ({where}; dense/empty contrast "
                             f"{contrast:.3g}x < {MIN_CONTRAST:g}x): train longer, or pass --threshold "
                             f"{suggestion:.4g} (keeps the densest {SUGGEST_KEPT:.0%} of the cells)")
    value = otsu if given is None else float(given)
    threshold = Threshold(value, float((density > value).mean()), int(density.size),
                          "chosen" if given is None else "given", suggestion)
    threshold.check_kept(threshold.kept, where)
    return threshold


def _in_hull(grid, x: torch.Tensor) -> torch.Tensor:
    """Whether points ``x [..., 3]`` lie in cells of ``grid`` inside its visual hull ``[...]``."""
    g = grid.cfg.resolution
    ijk = ((x - grid.aabb[:3]) / (grid.aabb[3:] - grid.aabb[:3]) * g).long().clamp(0, g - 1)
    return grid.allowed[ijk[..., 0], ijk[..., 1], ijk[..., 2]]


def run_density(run):
    """The run's density function ``x [..., 3] -> [...]`` as exports see it: the field's density, zero in
    cells the visual hull carved away (training never looks there, so the field is untrained junk in them).
    Runs without an occupancy grid (``run.occupancy`` None: splats) give their field's density everywhere."""
    grid = run.occupancy
    if grid is None or bool(grid.allowed.all()):
        return run.field.density
    return lambda x: run.field.density(x) * _in_hull(grid, x)


@torch.no_grad()
def measured_densities(run) -> np.ndarray:
    """Densities ``[M]`` of the cells training measured: the occupancy grid's EMA over the step size for the
    cells inside the visual hull, or, when there is no grid (splats) or it was never refreshed (uniform
    sampler), the density at the centres of a ``STATS_RESOLUTION^3`` lattice over the field's box (a splat's
    box is the reach of its Gaussians)."""
    grid = run.occupancy
    if grid is not None:
        values = grid.values[grid.allowed.reshape(-1)]
        if bool((values > 0).any()):
            return (values / run.renderer.step_size).cpu().numpy()
    from omnifield.io.mesh import density_grid

    lo, hi = run.field.aabb[:3].cpu(), run.field.aabb[3:].cpu()
    half = (hi - lo) / (2 * STATS_RESOLUTION)  # cell centres, not the corners
    return density_grid(run_density(run), torch.cat([lo + half, hi - half]), STATS_RESOLUTION).reshape(-1)
