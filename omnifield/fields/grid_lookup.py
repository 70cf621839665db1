"""Multilinear interpolation in stacks of small dense grids (planes, lines, images).

Used by tri-planes (K-Planes), CAM's modulation grids and NeuRBF's hybrid grid.
:func:`grid_lookup` runs the native CPU kernel (``omnifield/native/grid_lookup.cpp``) for float32
CPU tensors and the torch twin :func:`_grid_lookup` otherwise. The twin is written with index
gathers (not ``grid_sample``) so that it is differentiable to any order in the coordinates, which
eikonal and PDE losses need; the native path computes the forward pass and the first backward,
and differentiates the twin when a graph is recorded through that backward.
"""

from __future__ import annotations

import itertools

import torch

from omnifield.backend import native_kernels


def corner_offsets(d: int, device: torch.device) -> torch.Tensor:
    """``[2^d, d]`` binary corner offsets; corner ``k`` has bit ``i`` of ``k`` on axis ``i``."""
    k = torch.arange(2**d, device=device)
    return torch.stack([(k >> i) & 1 for i in range(d)], dim=-1)


def product_along(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t.prod(dim)`` for a short axis, multiplied out slice by slice: ``torch.prod``'s backward scans
    the axis, ~15 ms a call on a GPU for a million rows of 3."""
    slices = t.unbind(dim)
    product = slices[0]
    for s in slices[1:]:
        product = product * s
    return product


def multilinear_weights(frac: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """Weights ``[..., C]`` of the ``corners [C, d]`` (see :func:`corner_offsets`) of a cell for fractional
    positions ``frac [..., d]``: the product over axes of ``frac`` (corner bit 1) or ``1 - frac`` (bit 0)."""
    bits = corners.to(frac.dtype)
    f = frac[..., None, :]
    return product_along(bits * f + (1.0 - bits) * (1.0 - f), -1)  # [..., C]


def axis_pairs(n_dims: int) -> list[tuple[int, int]]:
    """The coordinate pairs spanned by the planes of an ``n_dims``-D tri-plane: 3-D -> xy, xz, yz; 4-D -> 6."""
    return list(itertools.combinations(range(n_dims), 2))


def grid_lookup(
    grids: torch.Tensor,  # [P, R, ..., R, F]: P grids with d axes of R vertices each
    coords: torch.Tensor,  # [N, P, d] in [0, 1]; coords[..., i] indexes grid axis i
    sum_grids: bool = False,
) -> torch.Tensor:  # [N, P, F], or [N, F] with sum_grids
    """Multilinear interpolation of ``P`` vertex-aligned grids (0 -> first vertex, 1 -> last); with
    ``sum_grids`` the ``P`` lookups of each point summed (the native kernel then never holds ``[N, P, F]``).

    Coordinates outside ``[0, 1]`` extrapolate linearly from the border cell.
    """
    d = grids.dim() - 2
    if coords.dim() != 3 or coords.shape[1:] != (grids.shape[0], d):
        raise ValueError(f"coords must be [N, {grids.shape[0]}, {d}], got {tuple(coords.shape)}")
    kernels = native_kernels(coords, "grid_lookup")
    if kernels is not None and grids.dtype == torch.float32 and not grids.is_cuda and 1 <= d <= 3:
        return _NativeGridLookup.apply(kernels, grids.contiguous(), coords.contiguous(), sum_grids)
    return _grid_lookup(grids, coords, sum_grids)


class _NativeGridLookup(torch.autograd.Function):
    """``grids [P, R.., F], coords [N, P, d], sum_grids -> [N, P, F]`` (or ``[N, F]``) with the native kernel;
    native first backward."""

    @staticmethod
    def forward(ctx, kernels, grids, coords, sum_grids):
        ctx.kernels, ctx.sum_grids = kernels, sum_grids
        ctx.save_for_backward(grids, coords)
        return kernels.forward(grids, coords, sum_grids)

    @staticmethod
    def backward(ctx, grad_out):
        grids, coords = ctx.saved_tensors
        need_grids, need_coords = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        if torch.is_grad_enabled():  # a graph through this backward (eikonal, PDE residuals): the twin's
            grids_alias, coords_alias = grids.view_as(grids), coords.view_as(coords)
            wanted = [t for t, need in ((grids_alias, need_grids), (coords_alias, need_coords)) if need]
            grads = iter(torch.autograd.grad(_grid_lookup(grids_alias, coords_alias, ctx.sum_grids), wanted, grad_out,
                                             create_graph=True))
            return None, next(grads) if need_grids else None, next(grads) if need_coords else None, None
        grad_grids, grad_coords = ctx.kernels.backward(grad_out, grids, coords, need_grids, need_coords,
                                                       ctx.sum_grids)
        return None, grad_grids, grad_coords, None


def _grid_lookup(grids: torch.Tensor, coords: torch.Tensor, sum_grids: bool = False) -> torch.Tensor:
    """Torch twin of :func:`grid_lookup` (same arguments; differentiable to any order)."""
    n_grids, res = grids.shape[0], grids.shape[1]
    d = grids.dim() - 2
    n_feat = grids.shape[-1]
    flat = grids.reshape(n_grids * res**d, n_feat)
    pos = coords * (res - 1)
    cell = torch.floor(pos).detach().clamp(0, res - 2)
    frac = pos - cell  # [N, P, d]
    corners = corner_offsets(d, coords.device)  # [C, d]
    vert = cell.long()[:, :, None, :] + corners[None, None]  # [N, P, C, d]
    strides = torch.tensor([res ** (d - 1 - i) for i in range(d)], device=coords.device)
    base = torch.arange(n_grids, device=coords.device)[None, :, None] * res**d
    idx = base + (vert * strides).sum(-1)  # [N, P, C]
    w = multilinear_weights(frac, corners)  # [N, P, C]
    out = (w[..., None] * flat[idx]).sum(dim=2)
    return out.sum(dim=1) if sum_grids else out
