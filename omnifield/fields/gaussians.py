"""3-D Gaussian scene (Kerbl et al. 2023): the explicit representation rendered by splatting.

Parameters (all ``nn.Parameter``, replaced in place when density control adds/removes Gaussians)::

    means           [N, 3]        world positions
    log_scales      [N, 3]        scale = exp(log_scales)
    quats           [N, 4]        rotation, (w, x, y, z), normalised on use
    opacity_logits  [N]           opacity = sigmoid(opacity_logits)
    sh_dc           [N, 1, 3]     degree-0 SH colour coefficients
    sh_rest         [N, K-1, 3]   higher bands, K = (max_sh_degree + 1)^2

Colour seen from camera centre ``o`` is ``max(0, sum_k Y_k(normalise(mu - o)) f_k + 0.5)`` using
the first ``(active_sh_degree + 1)^2`` bands; the active degree is raised on a schedule.

The scene is also a radiance field (:class:`~omnifield.fields.protocol.RadianceFieldLike`): :meth:`density`
and :meth:`rgb` evaluate the mixture so distillation and navigation can query it like any other field
(see :meth:`density` for the scale); ``aabb [6]`` is the box the Gaussians reached when built, unless
the owner assigns the capture's box.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnifield.backend import native_kernels
from omnifield.fields.gaussian_bins import GaussianBins
from omnifield.fields.sh import spherical_harmonics

SH_C0 = 0.28209479177387814
PAIR_BUDGET = 1 << 22  # (point, Gaussian) pairs the torch mixture evaluates at a time


def alpha_cutoff(opacities: torch.Tensor) -> torch.Tensor:
    """Squared Mahalanobis distance ``[N]`` at which ``o exp(-m/2)`` falls to alpha 1/255, the rasterizer's
    threshold: ``2 ln(255 o)``, 0 for Gaussians that never reach it."""
    return 2.0 * torch.log((255.0 * opacities).clamp_min(1.0))


def cutoff_half_extents(rot: torch.Tensor, scales: torch.Tensor, cutoff: torch.Tensor) -> torch.Tensor:
    """Axis-aligned half extent ``[N, 3]`` of each cut-off ellipsoid, ``sqrt(cutoff) sqrt(diag Sigma)``, from
    rotations ``[N, 3, 3]``, linear scales ``[N, 3]`` and :func:`alpha_cutoff` ``[N]``; zero for Gaussians
    without extent or that never reach the cut-off."""
    alive = (scales.min(-1).values > 0) & (cutoff > 0)
    half = cutoff.sqrt()[:, None] * (rot * scales[:, None, :]).square().sum(-1).sqrt()
    return torch.where(alive[:, None], half, torch.zeros_like(half))


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """Degree-0 coefficient giving colour ``rgb`` (``[..., 3] -> [..., 3]``)."""
    return (rgb - 0.5) / SH_C0


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of quaternions (w, x, y, z; normalised here). ``[N, 4] -> [N, 3, 3]``."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def build_covariances(scales: torch.Tensor, quats: torch.Tensor) -> torch.Tensor:
    """``Sigma = R S S^T R^T`` from linear ``scales [N, 3]`` and quaternions ``quats [N, 4]`` -> ``[N, 3, 3]``."""
    m = quat_to_rotmat(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)


class GaussianScene(nn.Module):
    """A set of anisotropic 3-D Gaussians with opacity and SH colour (see module docstring for shapes)."""

    colors_are_sh = True  # color_parameters() are SH coefficients [N, K, 3] (the native mixture needs them)

    def __init__(
        self,
        means: torch.Tensor,  # [N, 3]
        log_scales: torch.Tensor,  # [N, 3]
        quats: torch.Tensor,  # [N, 4]
        opacity_logits: torch.Tensor,  # [N]
        sh: torch.Tensor,  # [N, K, 3], K = (sh_degree + 1)^2
        active_sh_degree: int | None = None,
    ):
        super().__init__()
        n = means.shape[0]
        k = sh.shape[1]
        degree = int(round(math.sqrt(k))) - 1
        shapes_ok = (
            means.shape == (n, 3) and log_scales.shape == (n, 3) and quats.shape == (n, 4)
            and opacity_logits.shape == (n,) and sh.shape == (n, k, 3) and (degree + 1) ** 2 == k and degree <= 3
        )  # fmt: skip
        if not shapes_ok:
            raise ValueError(
                "GaussianScene expects means [N,3], log_scales [N,3], quats [N,4], opacity_logits [N], "
                f"sh [N,(d+1)^2,3] with d <= 3; got {tuple(means.shape)}, {tuple(log_scales.shape)}, "
                f"{tuple(quats.shape)}, {tuple(opacity_logits.shape)}, {tuple(sh.shape)}"
            )
        self.max_sh_degree = degree
        self.active_sh_degree = degree if active_sh_degree is None else min(active_sh_degree, degree)
        self.means = nn.Parameter(means.detach().float().clone())
        self.log_scales = nn.Parameter(log_scales.detach().float().clone())
        self.quats = nn.Parameter(quats.detach().float().clone())
        self.opacity_logits = nn.Parameter(opacity_logits.detach().float().clone())
        self.sh_dc = nn.Parameter(sh[:, :1].detach().float().clone())
        self.sh_rest = nn.Parameter(sh[:, 1:].detach().float().clone())
        # the box of the scene as a radiance field (RadianceFieldLike): the Gaussians' reach when built;
        # whoever knows the capture's box (a training or distillation box) assigns it
        # (read from the raw parameters: subclasses' activations are not set up yet)
        with torch.no_grad():
            half = cutoff_half_extents(quat_to_rotmat(self.quats), self.log_scales.exp(),
                                       alpha_cutoff(torch.sigmoid(self.opacity_logits).clamp(max=1 - 1e-6)))
            reach = torch.cat([(self.means - half).amin(0), (self.means + half).amax(0)]) if n else torch.zeros(6)
        self.register_buffer("aabb", reach, persistent=False)  # [6]: lo, hi

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_points(
        cls,
        points: torch.Tensor,  # [N, 3]
        colors: torch.Tensor | None = None,  # [N, 3] in [0, 1]
        sh_degree: int = 3,
        opacity: float = 0.1,
        scale_factor: float = 1.0,
    ) -> "GaussianScene":
        """Isotropic Gaussians at ``points``; scale = mean distance to the 3 nearest neighbours (3DGS init)."""
        from scipy.spatial import cKDTree

        pts = points.detach().cpu().double().numpy()
        n = len(pts)
        if n == 0:
            raise ValueError("GaussianScene.from_points needs at least one point")
        k = min(4, n)
        dist, _ = cKDTree(pts).query(pts, k=k)
        mean_d = dist[:, 1:].mean(axis=1) if k > 1 else np.ones(n)
        log_scales = torch.from_numpy(np.log(np.clip(mean_d * scale_factor, 1e-7, None))).float()[:, None].repeat(1, 3)
        if colors is None:
            colors = torch.full((n, 3), 0.5)
        sh = torch.zeros(n, (sh_degree + 1) ** 2, 3)
        sh[:, 0] = rgb_to_sh_dc(colors.detach().cpu().float())
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        logits = torch.full((n,), math.log(opacity / (1 - opacity)))
        return cls(points.detach().cpu().float(), log_scales, quats, logits, sh, active_sh_degree=0)

    # -- activated parameters -----------------------------------------------------------------
    def __len__(self) -> int:
        return self.means.shape[0]

    def gaussian_parameter_names(self) -> list[str]:
        """Names of the parameters with one row per Gaussian (what density control resizes)."""
        return ["means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest"]

    @property
    def sh(self) -> torch.Tensor:
        """All SH coefficients ``[N, K, 3]``."""
        return torch.cat([self.sh_dc, self.sh_rest], dim=1)

    def scales(self) -> torch.Tensor:
        """Linear scales ``[N, 3]``."""
        return torch.exp(self.log_scales)

    def opacities(self) -> torch.Tensor:
        """Opacities in (0, 1) ``[N]``."""
        return torch.sigmoid(self.opacity_logits)

    def rotations(self) -> torch.Tensor:
        """Quaternions (w, x, y, z) ``[N, 4]`` (unnormalised; the projection normalises)."""
        return self.quats

    def colors(self, origin: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
        """Colour ``[N, 3]`` of every Gaussian seen from camera centre ``origin [3]``; with ``visible [N]``
        (bool) only those Gaussians are coloured and the others get 0 (the rasterizer skips them)."""
        if visible is None:
            return self.colors_along(self.means - origin)
        index = torch.nonzero(visible).squeeze(1)
        seen = self.decode_colors(self.color_parameters(index), self.means[index] - origin)
        return seen.new_zeros(len(self), seen.shape[-1]).index_copy(0, index, seen)

    def base_colors(self) -> torch.Tensor:
        """Colour ``[N, 3]`` of each Gaussian averaged over view directions (its degree-0 SH band), in [0, 1]."""
        return (self.sh_dc[:, 0] * SH_C0 + 0.5).clamp(0.0, 1.0)

    def colors_along(self, dirs: torch.Tensor) -> torch.Tensor:
        """Colour ``[N, 3]`` along (unnormalised) view directions ``dirs [N, 3]`` (one per Gaussian)."""
        return self.decode_colors(self.color_parameters(), dirs)

    def color_parameters(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """What colours each Gaussian: its active SH coefficients ``[N, (degree+1)^2, 3]`` (rows ``index [M]``
        only, when given)."""
        dc, rest = self.sh_dc, self.sh_rest[:, : (self.active_sh_degree + 1) ** 2 - 1]
        if index is not None:
            dc, rest = dc[index], rest[index]
        return torch.cat([dc, rest], dim=1) if rest.shape[1] else dc

    def decode_colors(self, params: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """Colours ``[P, 3]`` of Gaussians with ``params [P, ...]`` (rows of :meth:`color_parameters`) along ``dirs [P, 3]``."""
        k = params.shape[1]
        if k == 1:
            return (params[:, 0] * SH_C0 + 0.5).clamp_min(0.0)
        d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        basis = spherical_harmonics(d, round(math.sqrt(k)))  # [P, k]
        return ((basis[..., None] * params).sum(dim=1) + 0.5).clamp_min(0.0)

    def set_sh_degree_for_step(self, step: int, every: int) -> None:
        """Raise the active SH degree by one every ``every`` steps (3DGS: 1000), up to the maximum."""
        self.active_sh_degree = min(self.max_sh_degree, step // max(every, 1))

    # -- as a radiance field ------------------------------------------------------------------
    def density(self, x: torch.Tensor, pair_budget: int = PAIR_BUDGET) -> torch.Tensor:
        """Volume density ``[...]`` of the mixture at points ``x [..., 3]``.

        ``sigma(x) = sum_i -ln(1 - o_i) / (sqrt(2 pi) s_i) exp(-0.5 (x - mu_i)^T Sigma_i^-1 (x - mu_i))``
        with ``s_i`` the smallest scale, so a ray through the centre along the thinnest axis accumulates
        optical depth ``-ln(1 - o_i)``, i.e. opacity ``o_i`` as in splatting, and rays in other directions
        at least that (trained splats are flat discs: a face-on ray must see the disc's opacity). As the
        rasterizer drops alpha below 1/255, each Gaussian is cut off where ``o_i exp(-m/2) < 1/255``
        (``m`` the squared Mahalanobis distance); Gaussians are found through a spatial index, so the
        cost is proportional to the (point, nearby Gaussian) pairs, evaluated ``pair_budget`` at a time.
        """
        return self._mixture(x, None, pair_budget)[0]

    def rgb(self, x: torch.Tensor, d: torch.Tensor, pair_budget: int = PAIR_BUDGET) -> torch.Tensor:
        """Colour ``[..., 3]`` at points ``x [..., 3]`` seen along directions ``d [..., 3]``.

        The density-weighted mean of the Gaussians' view-dependent colours (0.5 grey where empty).
        """
        return self._mixture(x, d, pair_budget)[1]

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rgb [..., 3], sigma [...])`` like :class:`~omnifield.fields.RadianceField`."""
        sigma, rgb = self._mixture(x, d, PAIR_BUDGET)
        return rgb, sigma

    def _mixture(self, x: torch.Tensor, d: torch.Tensor | None, pair_budget: int):
        lead = x.shape[:-1]
        pts = x.reshape(-1, 3)
        dirs = None if d is None else d.reshape(-1, 3).expand(len(pts), 3)
        if len(pts) == 0:
            return pts.new_zeros(lead), (None if dirs is None else pts.new_zeros(*lead, 3))
        needs_grad = torch.is_grad_enabled() and (pts.requires_grad or any(p.requires_grad for p in self.parameters()))
        terms = self._mixture_terms(needs_grad)
        colorable = dirs is None or self.colors_are_sh
        lib = None if needs_grad or not colorable or pts.dtype != terms[1].dtype else native_kernels(pts, "gaussian_mixture")
        if lib is not None:
            sigma, rgb = self._native_mixture(lib, pts, dirs, terms)
        else:
            sigma, rgb = self._paired_mixture(pts, dirs, terms, pair_budget)
        return sigma.reshape(lead), (None if rgb is None else rgb.reshape(*lead, 3))

    def frozen(self, name: str, compute):
        """``compute()``, kept under ``name`` until a parameter or buffer changes (a frozen teacher, a
        planner's world or a viewer computes it once). A tensor counts as changed when its storage, shape
        or sum does (``.data`` edits bypass autograd's version counters)."""
        tensors = [*self.parameters(), *self.buffers()]
        # use_rvq: a subclass's switch (Compact-3DGS quantisation) that changes the values without changing a
        # tensor; read by name because this base class has no such switch of its own
        key = (tuple((t.data_ptr(), tuple(t.shape), float(t.detach().sum())) for t in tensors),
               getattr(self, "use_rvq", None))
        cache = self.__dict__.setdefault("_frozen_values", {})
        hit = cache.get(name)
        if hit is None or hit[0] != key:
            hit = cache[name] = (key, compute())
        return hit[1]

    def _mixture_terms(self, needs_grad: bool):
        """``(bins, whiten [N, 3, 3], peak [N], cutoff [N])``; kept while unchanged when no gradient is needed."""
        return self._compute_mixture_terms() if needs_grad else self.frozen("mixture", self._compute_mixture_terms)

    def _compute_mixture_terms(self):
        scales = self.scales()
        # Sigma^-1 = L L^T with L = R S^-1 directly: trained scenes hold Gaussians too thin to invert Sigma
        # in float32, and Compact-3DGS's masked ones have zero scale (and opacity); those get no density.
        safe = scales.clamp_min(1e-7)
        rot = quat_to_rotmat(self.rotations())
        whiten = rot / safe[:, None, :]  # [N, 3, 3]; z = whiten^T (x - mu)
        opac = self.opacities().clamp(max=1 - 1e-6)
        cutoff = alpha_cutoff(opac.detach())  # squared Mahalanobis radius [N]
        alive = (scales.min(-1).values > 0) & (cutoff > 0)
        peak = -torch.log1p(-opac) / (math.sqrt(2 * math.pi) * safe.min(-1).values)
        peak = torch.where(alive, peak, torch.zeros_like(peak))  # [N]
        half = cutoff_half_extents(rot.detach(), scales.detach(), cutoff)
        bins = self.frozen("bins", lambda: GaussianBins(self.means, half))  # depends on detached values only
        return bins, whiten, peak, cutoff

    def _native_mixture(self, lib, pts, dirs, terms):
        """The native kernel (CPU float32, no gradients): one pass over each point's candidates."""
        bins, whiten, peak, cutoff = terms
        colors = dirs is not None
        coeffs = self.color_parameters().detach().contiguous() if colors else pts.new_zeros(0, 0, 3)
        basis = (spherical_harmonics(F.normalize(dirs, dim=-1), round(math.sqrt(coeffs.shape[1]))).contiguous()
                 if colors else pts.new_zeros(0, 0))  # fmt: skip
        sigma, rgb = lib.mixture_forward(
            pts.detach().contiguous(), basis, self.means.detach().contiguous(), whiten.detach().contiguous(),
            peak.detach().contiguous(), cutoff.contiguous(), coeffs, bins.cell_start, bins.entries, bins.large,
            bins.lo.float().contiguous(), float(bins.cell), bins.res, colors,
        )  # fmt: skip
        return sigma, (rgb if colors else None)

    def _paired_mixture(self, pts, dirs, terms, pair_budget):
        """The torch twin (differentiable): (point, candidate Gaussian) pairs, ``pair_budget`` at a time."""
        bins, whiten, peak, cutoff = terms
        colors = None if dirs is None else self.color_parameters()
        # chunks of consecutive points holding about pair_budget candidate pairs each
        group = torch.div(torch.cumsum(bins.pair_counts(pts), 0) - 1, pair_budget, rounding_mode="floor")
        bounds = [0, *(torch.nonzero(group[1:] != group[:-1]).squeeze(-1) + 1).tolist(), len(pts)]
        sigmas, rgbs = [], []
        for a, b in zip(bounds[:-1], bounds[1:]):
            p, g = bins.pairs(pts[a:b])
            z = ((pts[a:b][p] - self.means[g])[:, :, None] * whiten[g]).sum(1)  # [P, 3]
            maha = (z * z).sum(-1)
            w = torch.where(maha <= cutoff[g], peak[g] * torch.exp(-0.5 * maha), torch.zeros_like(maha))
            sigma = torch.zeros(b - a, dtype=w.dtype, device=w.device).index_add(0, p, w)
            sigmas.append(sigma)
            if dirs is not None:
                col = self.decode_colors(colors[g], dirs[a:b][p])  # [P, 3]
                num = torch.zeros(b - a, 3, dtype=w.dtype, device=w.device).index_add(0, p, w[:, None] * col)
                total = sigma[:, None]
                rgbs.append(torch.where(total > 1e-12, num / total.clamp_min(1e-12), torch.full_like(num, 0.5)))
        return torch.cat(sigmas), (torch.cat(rgbs) if dirs is not None else None)
