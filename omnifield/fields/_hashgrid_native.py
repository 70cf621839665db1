"""Bridge from :func:`hash_encode` to the native CPU kernel (``omnifield/native/hashgrid.cpp``).

The kernel computes the forward pass, the gradients wrt the table and ``x``, and the second-order
terms of those gradients, so losses on ``d enc / dx`` (SDF eikonal terms, first-order PDE
residuals) and gradient penalties on the table train natively. The first backward is an autograd
function of its own (:class:`_NativeHashEncodeBackward`); its backward is native unless autograd
records a graph through it (third derivatives, e.g. second-order PDE residuals trained by gradient
descent): then it differentiates the torch twin :func:`_hash_encode` instead (same values, any order).
"""

from __future__ import annotations

import torch

from omnifield.backend import native_kernels

_SUPPORTED_DIMS = (1, 2, 3, 4)
_SUPPORTED_FEATURES = (1, 2, 4, 8)


class _NativeHashEncode(torch.autograd.Function):
    """``x [N, D], table [T, F] -> [N, L*F]``; backward through :class:`_NativeHashEncodeBackward`."""

    @staticmethod
    def forward(ctx, kernels, x, table, resolutions, offsets, sizes, dense):
        ctx.kernels = kernels
        ctx.save_for_backward(x, table, resolutions, offsets, sizes, dense)
        return kernels.forward(x, table, resolutions, offsets, sizes, dense)

    @staticmethod
    def backward(ctx, grad_out):
        x, table, *layout = ctx.saved_tensors
        need_x, need_table = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grad_x, grad_table = _NativeHashEncodeBackward.apply(
            ctx.kernels, grad_out, x, table, *layout, need_x, need_table
        )
        return None, grad_x, grad_table, None, None, None, None


class _NativeHashEncodeBackward(torch.autograd.Function):
    """``(grad_out, x, table) -> (grad_x or None, grad_table or None)``; native backward (twin when recorded)."""

    @staticmethod
    def forward(ctx, kernels, grad_out, x, table, resolutions, offsets, sizes, dense, need_x, need_table):
        ctx.kernels = kernels
        ctx.set_materialize_grads(False)  # an unused output (often grad_table) gets None, not a zero table
        ctx.save_for_backward(grad_out, x, table, resolutions, offsets, sizes, dense)
        return tuple(kernels.backward(grad_out, x, table, resolutions, offsets, sizes, dense, need_x, need_table))

    @staticmethod
    def backward(ctx, gg_x, gg_table):
        grad_out, x, table, *layout = ctx.saved_tensors
        need_g, need_x, need_table = ctx.needs_input_grad[1:4]
        if torch.is_grad_enabled():
            needs = (need_g, need_x, need_table)
            return None, *_twin_double_backward(grad_out, x, table, layout, gg_x, gg_table, needs), *[None] * 6
        d_grad_out = d_x = d_table = None
        if gg_x is not None:  # grad_x = sum_l R_l sum_k <g, table[row_k]> dw_k/dfrac
            d_grad_out, d_x, d_table = ctx.kernels.double_backward(
                gg_x, grad_out, x, table, *layout, need_g, need_x, need_table
            )
        if gg_table is not None:  # grad_table = scatter of w_k g: its adjoint is the forward pass on gg_table
            if need_g:
                from_table = ctx.kernels.forward(x, gg_table, *layout)
                d_grad_out = from_table if d_grad_out is None else d_grad_out + from_table
            if need_x:
                from_table = ctx.kernels.backward(grad_out, x, gg_table, *layout, True, False)[0]
                d_x = from_table if d_x is None else d_x + from_table
        return None, d_grad_out, d_x, d_table, None, None, None, None, None, None


def _twin_double_backward(grad_out, x, table, layout, gg_x, gg_table, needs):
    """Second-order terms through the torch twin, kept in the graph (for third derivatives).

    Gradients are taken wrt aliases of ``grad_out``, ``x`` and ``table`` so that only their direct
    use here counts (``grad_out`` usually depends on ``x`` too; autograd adds that path itself).
    """
    from omnifield.fields.hashgrid import _hash_encode

    g_alias, x_alias, t_alias = (t.view_as(t) for t in (grad_out, x, table))
    first_inputs = [t for t in (x_alias, t_alias) if t.requires_grad]
    out = _hash_encode(x_alias, t_alias, *layout)
    firsts = torch.autograd.grad(out, first_inputs, g_alias, create_graph=True)
    upstream = dict(zip([id(t) for t in first_inputs], firsts))
    candidates = ((x_alias, gg_x), (t_alias, gg_table))
    pairs = [(upstream[id(t)], gg) for t, gg in candidates if gg is not None and id(t) in upstream]
    inputs = [t for t, needed in zip((g_alias, x_alias, t_alias), needs) if needed]
    if not pairs or not inputs:
        return [None, None, None]
    grads = iter(
        torch.autograd.grad([p[0] for p in pairs], inputs, [p[1] for p in pairs], create_graph=True, allow_unused=True)
    )
    return [next(grads) if needed else None for needed in needs]


def try_hash_encode(
    x: torch.Tensor,  # [N, D] float32 CPU
    table: torch.Tensor,  # [T_total, F] float32 CPU
    resolutions: torch.Tensor,  # [L] int64
    offsets: torch.Tensor,  # [L] int64
    sizes: torch.Tensor,  # [L] int64
    dense: torch.Tensor,  # [L] bool
) -> torch.Tensor | None:  # [N, L*F]
    """The native result, or ``None`` when the torch twin must run (no kernel, dtype/device, D or F)."""
    if x.dim() != 2 or x.shape[1] not in _SUPPORTED_DIMS or table.shape[1] not in _SUPPORTED_FEATURES:
        return None
    if table.dtype != x.dtype or table.device != x.device:
        return None
    kernels = native_kernels(x, "hashgrid")
    if kernels is None:
        return None
    return _NativeHashEncode.apply(kernels, x, table, resolutions, offsets, sizes, dense)
