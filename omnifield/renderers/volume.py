"""``VolumeRenderer``: rays -> samples -> field queries -> composited colour, depth and opacity.

Three samplers:

- ``"occupancy"``: constant steps through occupied cells of an :class:`OccupancyGrid`, then
  early ray termination (samples behind transmittance ``< early_stop_eps`` and samples with
  ``alpha < alpha_threshold`` dropped after a cheap no-grad density pass), as nerfacc's
  ``OccGridEstimator``;
- ``"uniform"``: ``n_samples`` evenly spaced (stratified in training) samples between the
  ray's box entry and exit — the vanilla NeRF baseline;
- ``"proposal"``: mip-NeRF 360 / nerfacto. Small density fields (:class:`~omnifield.fields.density.DensityField`,
  owned and checkpointed by the renderer) are evaluated on ``proposal_samples`` bins per level, each
  level's weights placing the next level's bins; the radiance field is evaluated on the last level's
  ``n_samples`` bins only. Bins are even in the ray coordinate of :meth:`VolumeRenderer.unit_distances`
  (box entry to exit, or the contracted comb's spacing). The proposal fields learn from the interlevel
  loss (``render_rays(..., interlevel=True)``).

The field lives in one of three spaces (``space``, see :mod:`omnifield.renderers.space`): the box
itself (objects), NDC (forward-facing captures: rays are warped, the samplers above run unchanged in
the NDC box) or contracted space (unbounded captures: a comb of ``n_samples`` bins, linear in
distance inside the unit cube and in disparity beyond, filtered by the occupancy grid over the
contracted cube ``[-2, 2]^3`` when the sampler is ``"occupancy"``). Rays come in and depths go out
in the capture's own (box) coordinates whatever the space, except NDC depths, which are NDC distances.

Works with any field exposing ``density(x [N,3]) -> [N]`` and ``forward(x, d) -> (rgb, sigma)``.
On CUDA with nerfacc installed the marching uses ``nerfacc.traverse_grids`` and compositing
``nerfacc.render_weight_from_density``; on CPU the native kernels / torch twins of this package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from omnifield.backend import use_cuda_library
from omnifield.config import register_config, replace_config
from omnifield.fields.density import DensityFieldConfig
from omnifield.fields.protocol import PointFeatureFieldLike
from omnifield.renderers.occupancy import OccupancyGrid, OccupancyGridConfig
from omnifield.renderers.proposal import (
    anneal_exponent,
    histogram_weights,
    interlevel_loss,
    resample_edges,
    uniform_edges,
)
from omnifield.renderers.raymarch import march_rays
from omnifield.renderers.rays import ray_aabb_intersect
from omnifield.renderers.space import (
    contract,
    contraction_stretch,
    inverse_spacing,
    ndc_points,
    ndc_rays,
    points_from_ndc,
    spacing,
)
from omnifield.renderers.volrend import (
    accumulate_along_rays,
    distortion_per_ray,
    exclusive_segment_cumsum,
    render_weight_from_density,
)

SAMPLERS = ("occupancy", "uniform", "proposal")
TERMINATION_ROUND = 32  # samples per ray whose densities are evaluated before dead rays are dropped
# Radiance-field samples per ray after proposal sampling (nerfacto, on a GPU: 48). 10 CPU minutes each, 24 against
# 32: fern 25.85 / 25.64 dB, kitchen25 19.11 and 17.82 / 19.31-19.40 and 18.50 dB (seeds 0 and 1), and ~15 %
# faster evaluation (fern 4.5 s a frame).
PROPOSAL_FIELD_SAMPLES = 24


def sampling_summary(cfg: "VolumeRendererConfig") -> str:
    """A few words on how ``cfg`` samples rays, e.g. ``proposal sampling (64 + 32 -> 24 samples per ray)``."""
    if cfg.sampler == "proposal":
        levels = " + ".join(str(n) for n in cfg.proposal_samples)
        return f"proposal sampling ({levels} -> {cfg.n_samples} samples per ray)"
    return "occupancy-grid sampling" if cfg.sampler == "occupancy" else f"uniform sampling ({cfg.n_samples} per ray)"


def sampler_settings(sampler: str, space: str) -> dict:
    """:class:`VolumeRendererConfig` settings for ``sampler`` ("auto" or one of :data:`SAMPLERS`) in ``space``.

    "auto" takes the occupancy grid for objects in a box (with alpha masks its visual hull skips ~90 % of the
    box from the first step, and surfaces end rays early) and proposal sampling for photos of scenes (NDC or
    contracted space), whose fields stay semi-transparent along much of each ray, so that marching every
    occupied step costs ~110 samples per ray where the proposals place ``PROPOSAL_FIELD_SAMPLES``.
    """
    if sampler == "auto":
        sampler = "occupancy" if space == "box" else "proposal"
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be auto or one of {', '.join(SAMPLERS)}, got {sampler!r}")
    return {"sampler": sampler, "n_samples": PROPOSAL_FIELD_SAMPLES} if sampler == "proposal" else {"sampler": sampler}


@register_config("volume_renderer")
@dataclass
class VolumeRendererConfig:
    """Sampler choice and its settings. ``step_size`` 0 means box diagonal / ``n_steps_per_diagonal``.
    Proposal sampler: ``proposal_samples`` bins per proposal level, each level a density field whose hash
    grid's finest resolution is the matching ``proposal_resolutions`` entry; the proposal weights are raised
    to a power that rises from 0 to 1 over the first ``proposal_anneal_steps`` training steps."""

    sampler: str = "occupancy"
    n_steps_per_diagonal: int = 1024
    step_size: float = 0.0
    early_stop_eps: float = 1e-4
    alpha_threshold: float = 0.0
    n_samples: int = 128
    near_plane: float = 0.0
    grid: Any = field(default_factory=OccupancyGridConfig)
    space: str = "box"
    space_center: tuple = (0.0, 0.0, 0.0)
    space_rotation: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    space_scale: float = 1.0
    ndc_focal: tuple = (1.0, 1.0)
    ndc_near: float = 1.0
    far_plane: float = 1000.0
    proposal_samples: tuple = (64, 32)  # nerfacto's (256, 96) is for a GPU; fern with (128, 64) and 48: 24.80 dB
    proposal_resolutions: tuple = (128, 256)
    proposal_anneal_steps: int = 250

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if len(self.proposal_samples) != len(self.proposal_resolutions) or not self.proposal_samples or \
                min(self.proposal_samples) < 1 or min(self.proposal_resolutions) < 16:
            raise ValueError("proposal_samples and proposal_resolutions need one entry per level (at least one), "
                             "samples >= 1 and resolutions >= 16")
        if self.n_samples < 1 or self.n_steps_per_diagonal < 1 or self.step_size < 0:
            raise ValueError("n_samples and n_steps_per_diagonal must be >= 1 and step_size >= 0")
        if self.space not in ("box", "ndc", "contract"):
            raise ValueError(f"space must be 'box', 'ndc' or 'contract', got {self.space!r}")
        if len(self.space_center) != 3 or len(self.space_rotation) != 9 or len(self.ndc_focal) != 2:
            raise ValueError("space_center needs 3 numbers, space_rotation 9 and ndc_focal 2")
        if not (self.space_scale > 0 and self.ndc_near > 0 and self.far_plane > self.near_plane >= 0):
            raise ValueError("space_scale and ndc_near must be > 0 and far_plane > near_plane >= 0")


@dataclass
class Samples:
    """Packed samples: ``ray_indices [S]``, ``t_starts [S]``, ``t_ends [S]``; ``features [S, F]``: the field's
    point features at the samples when the early-termination pass kept them (renders without autograd);
    ``per_ray`` > 0: every ray has exactly that many samples, rays in order (proposal sampling)."""

    ray_indices: torch.Tensor
    t_starts: torch.Tensor
    t_ends: torch.Tensor
    features: torch.Tensor | None = None
    per_ray: int = 0


@dataclass
class RenderOutput:
    """Per-ray results: ``rgb [R, 3]``, ``depth [R]``, ``opacity [R]``; ``n_samples`` kept in total;
    ``distortion [R]`` (mip-NeRF 360's loss of each ray's weights) and ``interlevel [R]`` (the proposal
    sampler's loss) and ``unit_depth [R]`` (the expected stopping point in the ray coordinate of
    :meth:`VolumeRenderer.unit_distances`, what passes every sample counting as 1) when asked for, else None."""

    rgb: torch.Tensor
    depth: torch.Tensor
    opacity: torch.Tensor
    n_samples: int
    distortion: torch.Tensor | None = None
    interlevel: torch.Tensor | None = None
    unit_depth: torch.Tensor | None = None


class VolumeRenderer(nn.Module):
    """Renders rays of a field inside box ``aabb [6]``; owns the occupancy grid (a checkpointed buffer) and,
    with the proposal sampler, the proposal density fields (``proposals``, trained with the field)."""

    def __init__(self, aabb, cfg: VolumeRendererConfig | None = None):
        super().__init__()
        self.cfg = cfg or VolumeRendererConfig()
        aabb = torch.as_tensor(aabb, dtype=torch.float32)
        self.register_buffer("aabb", aabb.clone(), persistent=False)
        self.grid = OccupancyGrid(aabb, self.cfg.grid)
        self.register_buffer("space_center", torch.tensor(self.cfg.space_center, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("space_rotation", torch.tensor(self.cfg.space_rotation, dtype=torch.float32).reshape(3, 3),
                             persistent=False)
        if self.cfg.space == "contract":  # the comb's bins are evenly spaced in contracted space
            s0, s1 = (float(spacing(torch.tensor(v, dtype=torch.float64))) for v in (self.cfg.near_plane,
                                                                                      self.cfg.far_plane))
            self.comb = (s0, s1)
            self.step_size = 2.0 * (s1 - s0) / self.cfg.n_samples
        else:
            diagonal = float((aabb[3:] - aabb[:3]).norm())
            self.step_size = self.cfg.step_size or diagonal / self.cfg.n_steps_per_diagonal
        self.proposals = nn.ModuleList()
        if self.cfg.sampler == "proposal":  # nerfacto's proposal networks, one per level
            base = DensityFieldConfig(aabb=tuple(float(v) for v in aabb))
            self.proposals.extend(
                replace_config(base, encoding=replace_config(base.encoding, max_resolution=int(resolution))).build()
                for resolution in self.cfg.proposal_resolutions)
        self.anneal = 1.0  # exponent on proposal weights; the trainer lowers it at the start of training

    # ------------------------------------------------------------------- space
    def to_field_space(self, origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rays ``[R, 3]`` of the capture -> the same rays in the space where samples are placed
        (unchanged for ``"box"``; NDC rays for ``"ndc"``; moved and scaled for ``"contract"``)."""
        if self.cfg.space == "box":
            return origins, directions
        o, d = self._in_frame(origins), directions @ self.space_rotation.T
        if self.cfg.space == "ndc":
            return ndc_rays(o, d, self.cfg.ndc_focal, self.cfg.ndc_near)
        return o, d

    def _in_frame(self, points: torch.Tensor) -> torch.Tensor:
        """Capture points ``[R, 3]`` -> the space's frame: moved to its centre, rotated and scaled."""
        return (points - self.space_center) @ self.space_rotation.T * self.cfg.space_scale

    def unit_depth_of(self, origins: torch.Tensor, directions: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Where ``points [R, 3]``, each on its capture ray (``origins``, unit ``directions [R, 3]``), lie in
        the ray coordinate of :meth:`unit_distances` ``[R]`` (clamped to [0, 1]): the target of a ray whose
        surface is known, in the units of :class:`RenderOutput`'s ``unit_depth``."""
        o, d = self.to_field_space(origins, directions)
        p = points if self.cfg.space == "box" else self._in_frame(points)
        if self.cfg.space == "ndc":
            p = ndc_points(p, self.cfg.ndc_focal, self.cfg.ndc_near)
        t = ((p - o) * d).sum(-1)
        lo, hi = self._ray_spans(o, d)
        along = spacing(t) if self.cfg.space == "contract" else t
        return ((along - lo) / (hi - lo).clamp_min(1e-9)).clamp(0.0, 1.0)

    def stopping_points(self, origins: torch.Tensor, directions: torch.Tensor, depth: torch.Tensor,
                        opacity: torch.Tensor) -> torch.Tensor:
        """Where capture rays (``origins``, unit ``directions [R, 3]``) stop on average, in capture coordinates
        ``[R, 3]``, from :meth:`render_rays`' ``depth`` and ``opacity [R]`` (the depth of the ray's weight, divided
        by its opacity; NDC depths are mapped back to the capture)."""
        distance = depth / opacity.clamp_min(1e-6)
        if self.cfg.space != "ndc":
            return origins + directions * distance[:, None]
        o, d = self.to_field_space(origins, directions)
        frame = points_from_ndc(o + d * distance[:, None], self.cfg.ndc_focal, self.cfg.ndc_near)
        return frame / self.cfg.space_scale @ self.space_rotation + self.space_center  # inverse of _in_frame

    def field_points(self, x: torch.Tensor) -> torch.Tensor:
        """Sample positions ``[N, 3]`` along rays of :meth:`to_field_space` -> the field's input points."""
        return contract(x) if self.cfg.space == "contract" else x

    def unit_distances(self, origins: torch.Tensor, directions: torch.Tensor,
                       s: "Samples") -> tuple[torch.Tensor, torch.Tensor]:
        """Samples' interval ends ``[S]`` as fractions of their ray's span (rays of :meth:`to_field_space`):
        from the box entry to the exit, or, in contracted space, from the near to the far plane in the
        comb's spacing coordinate (so steps even in disparity count equally). :meth:`_distances` inverts it."""
        lo, hi = self._ray_spans(origins, directions)
        lo, span = lo[s.ray_indices], (hi - lo).clamp_min(1e-9)[s.ray_indices]
        along = spacing if self.cfg.space == "contract" else (lambda t: t)
        return tuple((along(t) - lo) / span for t in (s.t_starts, s.t_ends))

    def _positions(self, origins, directions, s: "Samples") -> torch.Tensor:
        mids = (s.t_starts + s.t_ends)[:, None] * 0.5
        return self.field_points(origins[s.ray_indices] + directions[s.ray_indices] * mids)

    # ----------------------------------------------------------------- sampling
    def update_occupancy(self, field: nn.Module, step: int) -> bool:
        """Per-step upkeep of the sampler at training ``step``: refresh the occupancy grid from
        ``field.density`` (returns whether it ran); the proposal sampler sets its annealing exponent."""
        if self.cfg.sampler == "proposal":
            self.anneal = anneal_exponent(step, self.cfg.proposal_anneal_steps)
        if self.cfg.sampler != "occupancy":
            return False
        if self.cfg.space == "contract":  # density per contracted length, as the comb's steps are
            return self.grid.update(step, lambda y: field.density(y) * contraction_stretch(y), self.step_size)
        return self.grid.update(step, field.density, self.step_size)

    def jitter_shape(self, n_rays: int) -> tuple[int, ...]:
        """Shape of the stratified-sampling offsets :meth:`render_rays` takes for ``n_rays`` rays."""
        if self.cfg.sampler == "proposal":  # one shift per ray and level, the radiance field's level last
            return (n_rays, len(self.proposals) + 1)
        per_sample = self.cfg.sampler == "uniform" and self.cfg.space != "contract"
        return (n_rays, self.cfg.n_samples) if per_sample else (n_rays,)

    def _ray_spans(self, origins, directions) -> tuple[torch.Tensor, torch.Tensor]:
        """Per ray ``[R]``: where the ray coordinate of :meth:`unit_distances` is 0 and 1, as distances
        (box entry and exit, zero-length for rays that miss), or the comb's ends in spacing units."""
        if self.cfg.space == "contract":
            lo, hi = self.comb
            return origins.new_full(origins.shape[:1], lo), origins.new_full(origins.shape[:1], hi)
        near, far = ray_aabb_intersect(origins, directions, self.aabb, self.cfg.near_plane)
        return near, torch.maximum(far, near)

    def _distances(self, u: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """Ray coordinates ``u [R, k]`` in ``[0, 1]`` -> distances ``[R, k]`` along the rays (inverse of
        :meth:`unit_distances` for the spans of :meth:`_ray_spans`)."""
        t = lo[:, None] + u * (hi - lo)[:, None]
        return inverse_spacing(t) if self.cfg.space == "contract" else t

    def _propose(self, origins, directions, stratified: bool, jitter: torch.Tensor | None,
                 keep_levels: bool) -> tuple[Samples, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Proposal sampling: ``(samples, edges [R, n + 1], levels)``. ``samples`` are the radiance field's
        ``n_samples`` bins per ray (packed, every ray in order), ``edges`` the same bins in the ray
        coordinate; ``levels`` (with ``keep_levels``, else empty) each proposal level's ``(edges, weights)``
        with the weights differentiable in the proposal fields, for :func:`interlevel_loss`."""
        n_rays = origins.shape[0]
        if stratified and jitter is None:
            jitter = torch.rand(self.jitter_shape(n_rays), device=origins.device)
        shifts = jitter.to(origins.device).unbind(-1) if stratified else (None,) * (len(self.proposals) + 1)
        lo, hi = self._ray_spans(origins, directions)
        edges = weights = None
        levels = []
        for level, (density_field, n_bins) in enumerate(zip(self.proposals, self.cfg.proposal_samples)):
            if weights is None:
                edges = uniform_edges(n_rays, n_bins, shifts[0], origins)
            else:
                edges = resample_edges(edges, weights.detach(), n_bins, shifts[level], self.anneal)
            t = self._distances(edges, lo, hi)
            with torch.set_grad_enabled(keep_levels and torch.is_grad_enabled()):
                mids = 0.5 * (t[:, 1:] + t[:, :-1])
                x = self.field_points(origins[:, None] + directions[:, None] * mids[..., None])
                weights = histogram_weights(density_field.density(x), t)
            if keep_levels:
                levels.append((edges, weights))
        edges = resample_edges(edges, weights.detach(), self.cfg.n_samples, shifts[-1], self.anneal)
        t = self._distances(edges, lo, hi)
        ids = torch.arange(n_rays, device=origins.device).repeat_interleave(self.cfg.n_samples)
        return Samples(ids, t[:, :-1].reshape(-1), t[:, 1:].reshape(-1), per_ray=self.cfg.n_samples), edges, levels

    def _comb(self, origins, directions, stratified: bool, jitter: torch.Tensor | None) -> Samples:
        """Contracted space: ``n_samples`` bins per ray, evenly spaced in :func:`spacing` between the near
        and far planes (shifted by a random fraction of a bin in training), occupied cells only."""
        n_rays, n = origins.shape[0], self.cfg.n_samples
        s0, s1 = self.comb
        shift = (torch.rand(n_rays, 1, device=origins.device) if jitter is None else jitter[:, None]) if stratified \
            else origins.new_zeros(n_rays, 1)
        i = torch.arange(n + 1, device=origins.device, dtype=origins.dtype)
        t = inverse_spacing((s0 + (i + shift) * ((s1 - s0) / n)).clamp(max=s1))
        t0, t1 = t[:, :-1], t[:, 1:]
        keep = t1 > t0
        if self.cfg.sampler == "occupancy":
            mids = 0.5 * (t0 + t1)
            keep &= self.grid.occupied_at(contract(origins[:, None] + directions[:, None] * mids[..., None]))
        ids = torch.arange(n_rays, device=origins.device)[:, None].expand(n_rays, n)
        return Samples(ids[keep], t0[keep], t1[keep])

    def _uniform(self, origins, directions, near, far, stratified: bool, jitter: torch.Tensor | None) -> Samples:
        n = self.cfg.n_samples
        hit = far > near
        origins, directions, near, far = origins[hit], directions[hit], near[hit], far[hit]
        ray_ids = torch.nonzero(hit).squeeze(-1)
        u = torch.arange(n, device=origins.device, dtype=origins.dtype)[None].expand(ray_ids.numel(), n)
        if stratified:
            u = u + (torch.rand_like(u) if jitter is None else jitter[hit])
        else:
            u = u + 0.5
        span = (far - near)[:, None] / n
        centres = near[:, None] + u * span
        t_starts, t_ends = centres - 0.5 * span, centres + 0.5 * span
        ids = ray_ids[:, None].expand(-1, n)
        return Samples(ids.reshape(-1), t_starts.reshape(-1), t_ends.reshape(-1))

    def _march(self, origins, directions, near, far, stratified: bool, jitter: torch.Tensor | None) -> Samples:
        if stratified:  # jitter the start so samples cover the whole ray over iterations
            near = near + (torch.rand_like(near) if jitter is None else jitter) * self.step_size
        if use_cuda_library(origins, "nerfacc"):
            return self._march_nerfacc(origins, directions, near, far)
        ids, t0, t1 = march_rays(origins, directions, near, far, self.grid.occupancy, self.aabb, self.step_size)
        return Samples(ids, t0, t1)

    def _march_nerfacc(self, origins, directions, near, far) -> Samples:
        from nerfacc.grid import traverse_grids

        intervals, samples, _ = traverse_grids(
            origins, directions, self.grid.occupancy[None], self.aabb[None],
            near_planes=near, far_planes=far, step_size=self.step_size, cone_angle=0.0,
        )
        return Samples(samples.ray_indices.long(), intervals.vals[intervals.is_left], intervals.vals[intervals.is_right])

    def sample(self, field: nn.Module, origins: torch.Tensor, directions: torch.Tensor,
               stratified: bool = False, jitter: torch.Tensor | None = None, keep_features: bool = False) -> Samples:
        """Packed samples along rays ``origins/directions [R, 3]`` of the field's space (see
        :meth:`to_field_space`), after empty-space skipping and early termination (occupancy sampler).

        ``stratified`` offsets the samples randomly: by ``jitter`` (in [0, 1), shape
        :meth:`jitter_shape`) when given, else by fresh ``torch.rand`` draws. ``keep_features`` (a field with
        point features): the early-termination pass keeps the features it computed in ``Samples.features``,
        so a render without autograd need not evaluate them again.
        """
        if self.cfg.sampler == "proposal":
            with torch.no_grad():
                return self._propose(origins, directions, stratified, jitter, keep_levels=False)[0]
        if self.cfg.space == "contract":
            s = self._comb(origins, directions, stratified, jitter)
            if self.cfg.sampler == "uniform":
                return s
        else:
            near, far = ray_aabb_intersect(origins, directions, self.aabb, self.cfg.near_plane)
            if self.cfg.sampler == "uniform":
                return self._uniform(origins, directions, near, far, stratified, jitter)
            s = self._march(origins, directions, near, far, stratified, jitter)
        if s.ray_indices.numel() == 0 or (self.cfg.early_stop_eps <= 0 and self.cfg.alpha_threshold <= 0):
            return s
        features = keep_features and isinstance(field, PointFeatureFieldLike)
        with torch.no_grad():
            keep, feats = self._visible(field, origins, directions, s, features)
        return Samples(s.ray_indices[keep], s.t_starts[keep], s.t_ends[keep], feats[keep] if features else None)

    def _visible(self, field: nn.Module, origins, directions, s: Samples,
                 features: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Which samples ``[S] bool`` to keep: transmittance ``>= early_stop_eps`` and alpha ``>=
        alpha_threshold``. Densities are evaluated in rounds of ``TERMINATION_ROUND`` samples per ray, front
        to back, and only for rays still alive, so samples behind a ray's termination point (inside and
        behind surfaces) are never evaluated; the kept samples are exactly those of one pass over all.
        With ``features`` the densities come from the field's point features, returned ``[S, F]`` as well
        (rows of samples never evaluated are zero), else None."""
        n_rays, n = origins.shape[0], s.ray_indices.numel()
        counts = torch.bincount(s.ray_indices, minlength=n_rays)
        rank = torch.arange(n, device=counts.device) - (torch.cumsum(counts, 0) - counts)[s.ray_indices]
        sigma_delta = torch.zeros(n, dtype=torch.float64, device=counts.device)
        evaluated = torch.zeros(n, dtype=torch.bool, device=counts.device)
        feats = None
        optical_depth = torch.zeros(n_rays, dtype=torch.float64, device=counts.device)  # so far, per ray
        limit = -math.log(self.cfg.early_stop_eps) if self.cfg.early_stop_eps > 0 else math.inf
        for first in range(0, int(counts.max()), TERMINATION_ROUND):
            window = (rank >= first) & (rank < first + TERMINATION_ROUND) & (optical_depth <= limit)[s.ray_indices]
            idx = torch.nonzero(window).squeeze(-1)
            if idx.numel() == 0:
                break
            part = Samples(s.ray_indices[idx], s.t_starts[idx], s.t_ends[idx])
            x = self._positions(origins, directions, part)
            if features:
                part_feats = field.point_features(x)
                if feats is None:
                    feats = part_feats.new_zeros(n, part_feats.shape[-1])
                feats[idx] = part_feats
                sigma = field.density_from_features(part_feats, x)
            else:
                sigma = field.density(x)
            step = sigma.double() * (part.t_ends - part.t_starts)
            sigma_delta[idx] = step
            evaluated[idx] = True
            optical_depth.index_add_(0, part.ray_indices, step)
        before = exclusive_segment_cumsum(sigma_delta, s.ray_indices, n_rays)
        alphas = -torch.expm1(-sigma_delta)
        keep = evaluated & (alphas >= self.cfg.alpha_threshold) & (torch.exp(-before) >= self.cfg.early_stop_eps)
        return keep, feats

    # -------------------------------------------------------------- compositing
    def _weights(self, s: Samples, sigmas: torch.Tensor, n_rays: int):
        if use_cuda_library(sigmas, "nerfacc"):
            from nerfacc import render_weight_from_density as nerfacc_weights

            return nerfacc_weights(s.t_starts, s.t_ends, sigmas, ray_indices=s.ray_indices, n_rays=n_rays)
        return render_weight_from_density(s.t_starts, s.t_ends, sigmas, s.ray_indices, n_rays, s.per_ray)

    def render_rays(
        self,
        field: nn.Module,
        origins: torch.Tensor,  # [R, 3]
        directions: torch.Tensor,  # [R, 3] unit
        background: torch.Tensor | None = None,  # [3] or [R, 3]; None = black
        stratified: bool = False,
        jitter: torch.Tensor | None = None,  # stratified offsets, see sample()
        appearance: torch.Tensor | None = None,  # [R, E] per-ray appearance codes; None = the field's default
        distortion: bool = False,
        interlevel: bool = False,
        unit_depth: bool = False,
    ) -> RenderOutput:
        """Differentiable rendering of a batch of rays of ``field`` (rays in the capture's coordinates).
        ``appearance`` codes reach the field as a third argument, one per sample (``appearance[ray_indices]``).
        ``distortion``: also each ray's distortion loss over :meth:`unit_distances` (zero for rays without
        samples). ``interlevel`` (proposal sampler): also each ray's interlevel loss, differentiable in the
        proposal fields. ``unit_depth``: also each ray's expected stopping point in that ray coordinate."""
        n_rays = origins.shape[0]
        view_directions = directions
        origins, directions = self.to_field_space(origins, directions)
        levels = []
        if self.cfg.sampler == "proposal":
            s, edges, levels = self._propose(origins, directions, stratified, jitter, keep_levels=interlevel)
        else:
            s = self.sample(field, origins, directions, stratified, jitter, keep_features=not torch.is_grad_enabled())
        if s.ray_indices.numel() == 0:  # every ray missed the box or crossed only empty space
            zeros = origins.new_zeros(n_rays)
            bg = origins.new_zeros(n_rays, 3) if background is None else background.expand(n_rays, 3)
            return RenderOutput(bg.clone(), zeros, zeros.clone(), 0, zeros.clone() if distortion else None,
                                None, torch.ones_like(zeros) if unit_depth else None)
        mids = (s.t_starts + s.t_ends) * 0.5
        x = self.field_points(origins[s.ray_indices] + directions[s.ray_indices] * mids[:, None])
        codes = () if appearance is None else (appearance[s.ray_indices],)
        if s.features is None:
            rgbs, sigmas = field(x, view_directions[s.ray_indices], *codes)
        else:  # no autograd: the termination pass's features, so the field's encoding runs once per sample
            rgbs = field.rgb_from_features(s.features, view_directions[s.ray_indices], *codes)
            sigmas = field.density_from_features(s.features, x)
        weights, _, _ = self._weights(s, sigmas, n_rays)
        rgb = accumulate_along_rays(weights, rgbs, s.ray_indices, n_rays, s.per_ray)
        opacity = accumulate_along_rays(weights, None, s.ray_indices, n_rays, s.per_ray).squeeze(-1)
        depth = accumulate_along_rays(weights, mids[:, None], s.ray_indices, n_rays, s.per_ray).squeeze(-1)
        if self.cfg.space == "contract":  # back to the capture's units
            depth = depth / self.cfg.space_scale
        if background is not None:
            rgb = rgb + (1.0 - opacity)[:, None] * background
        spread = expected = None
        if distortion or unit_depth:
            starts, ends = self.unit_distances(origins, directions, s)
            if distortion:
                spread = distortion_per_ray(weights, starts, ends, s.ray_indices, n_rays)
            if unit_depth:  # what the rays do not stop counts as stopping at the far end (1)
                expected = accumulate_along_rays(weights, ((starts + ends) * 0.5)[:, None], s.ray_indices, n_rays,
                                                 s.per_ray).squeeze(-1) + (1.0 - opacity)
        inter = interlevel_loss(edges, weights.reshape(n_rays, -1), levels) if levels else None
        return RenderOutput(rgb, depth, opacity, int(s.ray_indices.numel()), spread, inter, expected)

    @torch.no_grad()
    def render_image(self, field: nn.Module, cameras, index: int, background: torch.Tensor | None = None,
                     chunk: int = 8192, appearance: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Full image of camera ``index`` in chunks of rays: ``rgb [H,W,3]``, ``depth [H,W]``, ``opacity [H,W]``,
        and ``samples_per_ray`` (a float). Rays are rendered on the renderer's device (CPU or a GPU, the
        field's), images come back on the CPU. ``appearance [E]``: one code for every ray (None: the
        field's default)."""
        device = self.aabb.device
        origins, directions = (t.to(device) for t in cameras.image_rays(index))
        background = None if background is None else background.to(device)
        codes = None if appearance is None else appearance.to(device).expand(origins.shape[0], -1)
        outs = [self.render_rays(field, origins[i:i + chunk], directions[i:i + chunk], background,
                                 appearance=None if codes is None else codes[i:i + chunk])
                for i in range(0, origins.shape[0], chunk)]
        h, w = cameras.height, cameras.width
        return {
            "rgb": torch.cat([o.rgb for o in outs]).reshape(h, w, 3).cpu(),
            "depth": torch.cat([o.depth for o in outs]).reshape(h, w).cpu(),
            "opacity": torch.cat([o.opacity for o in outs]).reshape(h, w).cpu(),
            "samples_per_ray": sum(o.n_samples for o in outs) / max(origins.shape[0], 1),
        }

