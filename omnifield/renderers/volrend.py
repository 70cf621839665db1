"""Volume-rendering compositing of packed samples (the math of NeRF's quadrature).

For the samples ``i`` of one ray with densities ``sigma_i`` over intervals ``delta_i``::

    alpha_i = 1 - exp(-sigma_i * delta_i)
    T_i     = exp(-sum_{j<i} sigma_j * delta_j)          (transmittance)
    w_i     = T_i * alpha_i                              (weights; sum_i w_i = opacity <= 1)
    C       = sum_i w_i c_i + (1 - opacity) * background

and mip-NeRF 360's distortion loss of the weights over normalised ray distances ``s``.

Samples are packed: flat arrays with ``ray_indices [S]`` sorted by ray, as nerfacc.

Example::

    >>> t0 = torch.tensor([0.0, 1.0]); t1 = torch.tensor([1.0, 2.0]); ids = torch.tensor([0, 0])
    >>> w, T, a = render_weight_from_density(t0, t1, torch.tensor([1.0, 1.0]), ids, n_rays=1)
    >>> T   # tensor([1.0000, 0.3679])
"""

from __future__ import annotations

import torch


def exclusive_segment_cumsum(values: torch.Tensor, ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """``out_i = sum of values_j over earlier samples j of the same ray``; ``[S] -> [S]``.

    Accumulates in float64 so that long packed arrays do not lose precision.
    """
    if values.numel() == 0:
        return values
    v64 = values.double()
    inclusive = torch.cumsum(v64, 0)
    exclusive = inclusive - v64
    counts = torch.bincount(ray_indices, minlength=n_rays)
    first = torch.cumsum(counts, 0) - counts  # index of each ray's first sample
    base = exclusive[first.clamp(max=values.numel() - 1)]
    return (exclusive - base[ray_indices]).to(values.dtype)


def weights_along_rows(sigma_delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights, transmittances and alphas ``[R, n]`` of ``sigma_delta [R, n]``, each row one ray's samples
    in order (a dense layout; rows are short, so float32 cumulative sums are exact enough)."""
    transmittance = torch.exp(-(torch.cumsum(sigma_delta, -1) - sigma_delta))
    alphas = -torch.expm1(-sigma_delta)
    return transmittance * alphas, transmittance, alphas


def render_weight_from_density(
    t_starts: torch.Tensor,  # [S]
    t_ends: torch.Tensor,  # [S]
    sigmas: torch.Tensor,  # [S]
    ray_indices: torch.Tensor,  # [S] int64, sorted
    n_rays: int,
    per_ray: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights, transmittances and alphas ``[S]`` of packed samples. ``per_ray`` > 0 says every ray has
    exactly that many samples (``S = n_rays * per_ray``), so rows of a ``[n_rays, per_ray]`` view are
    composited instead of segments (~7x faster on the CPU)."""
    sigma_delta = sigmas * (t_ends - t_starts)
    if per_ray:
        return tuple(v.reshape(-1) for v in weights_along_rows(sigma_delta.reshape(n_rays, per_ray)))
    transmittance = torch.exp(-exclusive_segment_cumsum(sigma_delta, ray_indices, n_rays))
    alphas = 1.0 - torch.exp(-sigma_delta)
    return transmittance * alphas, transmittance, alphas


def accumulate_along_rays(
    weights: torch.Tensor,  # [S]
    values: torch.Tensor | None,  # [S, C] or None (then the weights themselves are summed)
    ray_indices: torch.Tensor,  # [S]
    n_rays: int,
    per_ray: int = 0,
) -> torch.Tensor:
    """Per-ray sums ``[n_rays, C]`` (or ``[n_rays, 1]`` of the weights when ``values`` is None); ``per_ray``
    as in :func:`render_weight_from_density`."""
    src = weights[:, None] if values is None else weights[:, None] * values
    if per_ray:
        return src.reshape(n_rays, per_ray, src.shape[-1]).sum(1)
    out = torch.zeros(n_rays, src.shape[-1], dtype=src.dtype, device=src.device)
    return out.index_add(0, ray_indices, src)


def distortion_per_ray(
    weights: torch.Tensor,  # [S]
    s_starts: torch.Tensor,  # [S] normalised ray distances (about [0, 1] over the ray's span)
    s_ends: torch.Tensor,  # [S]
    ray_indices: torch.Tensor,  # [S] int64, sorted; each ray's samples in increasing distance
    n_rays: int,
) -> torch.Tensor:
    """mip-NeRF 360's distortion loss (Barron et al. 2022, eq. 15) of each ray ``[n_rays]``::

        L = sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_{i+1} - s_i)

    with ``m_i`` the midpoints of the intervals. It is small when a ray's weight sits in one short
    stretch (a surface) and grows with weight spread along the ray (fog, floaters in front of a surface).
    The double sum is computed in O(S) with exclusive cumulative sums (samples sorted along each ray):
    ``sum_{i,j} = 2 sum_i w_i (m_i W_{<i} - (wm)_{<i})``.
    """
    mids = 0.5 * (s_starts + s_ends)
    weight_before = exclusive_segment_cumsum(weights, ray_indices, n_rays)
    moment_before = exclusive_segment_cumsum(weights * mids, ray_indices, n_rays)
    per_sample = 2.0 * weights * (mids * weight_before - moment_before) + weights.square() * (s_ends - s_starts) / 3.0
    return weights.new_zeros(n_rays).index_add(0, ray_indices, per_sample)
