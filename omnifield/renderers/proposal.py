"""Proposal sampling (mip-NeRF 360, nerfacto): histograms along rays, resampling, the interlevel loss.

Rays are described by bin edges in a normalised ray coordinate ``s`` in ``[0, 1]`` (dense layout:
``edges [R, m + 1]`` sorted along each ray, ``weights [R, m]`` per bin). A proposal level turns the
weights of the previous histogram into new edges by inverting its cumulative distribution; the radiance
field is evaluated only on the last level's bins. The proposal networks learn from the interlevel loss,
which asks each proposal histogram to bound the final weights from above (Barron et al. 2022, eq. 13).
"""

from __future__ import annotations

import torch

from omnifield.renderers.volrend import weights_along_rows

HISTOGRAM_PADDING = 0.01  # nerfacto's: a little weight on every bin, so no region is ever left unsampled
INTERLEVEL_EPS = 1e-7


def anneal_exponent(step: int, anneal_steps: int, slope: float = 10.0) -> float:
    """Exponent applied to proposal weights before resampling (nerfacto's schedule): 0 at step 0 (uniform
    resampling while the proposal networks know nothing), rising steeply to 1 at ``anneal_steps``."""
    if anneal_steps <= 0:
        return 1.0
    x = min(max(step / anneal_steps, 0.0), 1.0)
    return slope * x / ((slope - 1.0) * x + 1.0)


def uniform_edges(n_rays: int, n_bins: int, shift: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``n_bins`` even bins of ``[0, 1]`` per ray: edges ``[R, n_bins + 1]``. ``shift [R]`` in ``[0, 1)`` moves
    the inner edges by up to one bin (stratified training; the ends stay at 0 and 1); None: no shift."""
    i = torch.arange(n_bins + 1, dtype=like.dtype, device=like.device).expand(n_rays, n_bins + 1)
    if shift is not None:
        i = i + shift.to(like.dtype)[:, None] - 0.5
    return (i / n_bins).clamp(0.0, 1.0)


def resample_edges(edges: torch.Tensor, weights: torch.Tensor, n_bins: int, shift: torch.Tensor | None,
                   exponent: float = 1.0) -> torch.Tensor:
    """New edges ``[R, n_bins + 1]`` placed by inverting the piecewise-constant distribution of
    ``weights [R, m]`` over ``edges [R, m + 1]`` (weights raised to ``exponent``, plus
    :data:`HISTOGRAM_PADDING`). Evenly spaced quantiles from 0 to 1 without ``shift``; with ``shift [R]``
    in ``[0, 1)``, quantiles ``(i + shift) / (n_bins + 1)`` (stratified). Not differentiable."""
    with torch.no_grad():
        w = weights.clamp_min(0.0)
        if exponent != 1.0:
            w = w.pow(exponent)
        w = w + HISTOGRAM_PADDING
        cdf = torch.cumsum(w, -1) / w.sum(-1, keepdim=True)
        cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf[:, :-1], torch.ones_like(cdf[:, :1])], -1)
        n_rays = edges.shape[0]
        i = torch.arange(n_bins + 1, dtype=edges.dtype, device=edges.device).expand(n_rays, n_bins + 1)
        u = i / n_bins if shift is None else (i + shift.to(edges.dtype)[:, None]) / (n_bins + 1)
        u = u.contiguous()
        above = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)
        below = above - 1
        c0, c1 = cdf.gather(-1, below), cdf.gather(-1, above)
        e0, e1 = edges.gather(-1, below), edges.gather(-1, above)
        frac = ((u - c0) / (c1 - c0).clamp_min(1e-12)).clamp(0.0, 1.0)
        return e0 + frac * (e1 - e0)


def outer_weights(edges: torch.Tensor, env_edges: torch.Tensor, env_weights: torch.Tensor) -> torch.Tensor:
    """For each bin of ``edges [R, n + 1]``, the summed weight ``[R, n]`` of the bins of ``env_edges
    [R, m + 1]`` that overlap it (``env_weights [R, m]``): mip-NeRF 360's outer measure."""
    total = torch.cat([torch.zeros_like(env_weights[:, :1]), torch.cumsum(env_weights, -1)], -1)
    starts, ends = edges[:, :-1].contiguous(), edges[:, 1:].contiguous()
    first = torch.searchsorted(env_edges[:, 1:].contiguous(), starts, right=True)  # bins ending at or before
    stop = torch.searchsorted(env_edges[:, :-1].contiguous(), ends, right=False)  # bins starting before the end
    return (total.gather(-1, stop) - total.gather(-1, first)).clamp_min(0.0)


def interlevel_loss(edges: torch.Tensor, weights: torch.Tensor,
                    levels: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Per-ray interlevel loss ``[R]``: over each proposal level ``(env_edges, env_weights)``, the mean over
    the final bins of ``max(0, w - outer)^2 / w`` (``w``: the final ``weights [R, n]``, detached, over
    ``edges [R, n + 1]``), summed over levels. Only the proposal weights receive gradients."""
    w = weights.detach()
    loss = w.new_zeros(w.shape[0])
    for env_edges, env_weights in levels:
        outer = outer_weights(edges.detach(), env_edges.detach(), env_weights)
        loss = loss + ((w - outer).clamp_min(0.0).square() / (w + INTERLEVEL_EPS)).mean(-1)
    return loss


def histogram_weights(sigmas: torch.Tensor, t_edges: torch.Tensor) -> torch.Tensor:
    """Volume-rendering weights ``[R, m]`` of densities ``sigmas [R, m]`` over bins with distance edges
    ``t_edges [R, m + 1]``."""
    return weights_along_rows(sigmas * (t_edges[:, 1:] - t_edges[:, :-1]))[0]
