"""Bridge from :func:`hash_encode` to the native CPU kernel (``omnifield/native/hashgrid.cpp``).

The kernel computes the forward pass and the first-order gradients wrt the table and ``x``.
Second derivatives (``create_graph=True``, e.g. eikonal terms or PDE residuals that differentiate
the gradient wrt ``x`` again) are not native: when autograd asks for a differentiable backward,
the backward recomputes the encoding with the torch twin :func:`_hash_encode` and differentiates
that (identical values, twice differentiable). Plain training keeps the native forward and backward.
"""

from __future__ import annotations

import torch

from omnifield.backend import native_kernels

_SUPPORTED_DIMS = (1, 2, 3, 4)
_SUPPORTED_FEATURES = (1, 2, 4, 8)


class _NativeHashEncode(torch.autograd.Function):
    """Native forward/backward; differentiable backward through the twin when ``create_graph``."""

    @staticmethod
    def forward(ctx, kernels, x, table, resolutions, offsets, sizes, dense):
        ctx.kernels = kernels
        ctx.save_for_backward(x, table, resolutions, offsets, sizes, dense)
        return kernels.forward(x, table, resolutions, offsets, sizes, dense)

    @staticmethod
    def backward(ctx, grad_out):
        x, table, resolutions, offsets, sizes, dense = ctx.saved_tensors
        need_x, need_table = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        if torch.is_grad_enabled():
            grad_x, grad_table = _differentiable_backward(
                grad_out, x, table, resolutions, offsets, sizes, dense, need_x, need_table
            )
        else:
            grad_x, grad_table = ctx.kernels.backward(
                grad_out, x, table, resolutions, offsets, sizes, dense, need_x, need_table
            )
        return None, grad_x, grad_table, None, None, None, None


def _differentiable_backward(grad_out, x, table, resolutions, offsets, sizes, dense, need_x, need_table):
    """Vector-Jacobian product through the torch twin, kept in the graph for double backward."""
    from omnifield.fields.hashgrid import _hash_encode

    inputs = [t for t, needed in ((x, need_x), (table, need_table)) if needed]
    out = _hash_encode(x, table, resolutions, offsets, sizes, dense)
    grads = iter(torch.autograd.grad(out, inputs, grad_out, create_graph=True, allow_unused=True))
    return (next(grads) if need_x else None), (next(grads) if need_table else None)


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
