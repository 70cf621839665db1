"""Second-order jets of a Gaussian-embedding field in closed form (fast residuals for ``pig``).

A PDE residual takes up to second derivatives of ``u`` by autograd. Through a Gaussian embedding
that is a double backward over ``[N, G]`` tensors, the dominant cost of a PIG solve. Here the value,
gradient and Hessian of the field at the points are computed forward, in closed form:

- Gaussian ``g = exp(-1/2 sum_i p_i d_i^2)``, ``d = s - mu`` (diagonal covariance):
  ``dg/ds_i = -p_i d_i g`` and ``d2g/ds_i ds_j = (p_i d_i p_j d_j - [i = j] p_i) g``; ``FE = sum f g``;
- through each ``tanh`` layer: ``a = tanh z``, ``da = (1 - a^2) dz``,
  ``d2a = (1 - a^2) d2z - 2 a (1 - a^2) dz dz^T``.

:class:`JetField` returns, when the points require grad, the quadratic Taylor polynomial
``u0 + J (x - x0) + 1/2 (x - x0)^T H (x - x0)`` at ``x0 = x`` (detached): its value, gradient and
Hessian at ``x`` are exactly the field's, so any residual of order <= 2 taken by autograd is
unchanged, but the double backward runs over that polynomial only; the optimiser's backward
through ``u0, J, H`` is a single one (about twice as fast as autograd's double backward). Without
grad, or in float32 (the expansion below cancels digits), it is the field itself.
"""

from __future__ import annotations

import torch
from torch import nn

from omnifield.fields.gaussian_embedding import GaussianEmbedding
from omnifield.fields.mlp import MLP
from omnifield.pde.field import PDEField


def jet_supported(field: nn.Module) -> bool:
    """Whether :class:`JetField` can take ``field``: a :class:`PDEField` with a dense diagonal
    Gaussian embedding (``n_neighbors = 0``) and a plain tanh decoder."""
    return (
        isinstance(field, PDEField)
        and isinstance(field.encoding, GaussianEmbedding)
        and field.encoding.cfg.n_neighbors == 0
        and field.encoding.cfg.covariance == "diagonal"
        and field.gates is None
        and field.cfg.activation == "tanh"
        and isinstance(field.decoder, MLP)
    )


def _embedding_jet(enc: GaussianEmbedding, s: torch.Tensor):
    """``FE [N, F]``, ``dFE [N, D, F]``, ``d2FE [N, D, D, F]`` with respect to the unit-cube ``s [N, D]``.

    Diagonal covariance: ``(s - mu)`` powers expanded so that every derivative is the single product
    ``w [N, G] @ [G, K F]`` (only ``w`` is an elementwise ``[N, G]`` tensor). The expansion cancels
    digits when the Gaussians are narrow, so it is used in float64 only."""
    if enc.cfg.covariance != "diagonal":
        raise ValueError("the closed-form jet supports diagonal covariances only")
    n, dim = s.shape
    mu = enc.means.to(s.dtype)  # [G, D]
    p = torch.exp(2.0 * enc.log_precision.to(s.dtype))  # [G, D]
    f = enc.features.to(s.dtype)  # [G, F]
    q = (s * s) @ p.T - 2.0 * s @ (p * mu).T + (p * mu * mu).sum(-1)
    w = torch.exp(-0.5 * q)  # [N, G]
    # polynomial coefficients in s of each derivative: d/ds_i -> -p_i (s_i - mu_i);
    # d2/ds_i ds_j -> p_i p_j (s_i - mu_i)(s_j - mu_j) - [i = j] p_i
    mats = [f]  # coefficient matrices [G, F]; a derivative is sum_k monomial_k(s) * (w @ mats[k])

    def add(coef: torch.Tensor) -> int:
        mats.append(coef[:, None] * f)
        return len(mats) - 1

    one = torch.ones_like(s[:, 0])
    first = []
    for i in range(dim):
        first.append([(add(-p[:, i]), s[:, i]), (add(p[:, i] * mu[:, i]), one)])
    second = {}
    for i in range(dim):
        for j in range(i, dim):
            pp = p[:, i] * p[:, j]
            lst = [(add(pp), s[:, i] * s[:, j]), (add(-pp * mu[:, j]), s[:, i]), (add(-pp * mu[:, i]), s[:, j]),
                   (add(pp * mu[:, i] * mu[:, j] - (p[:, i] if i == j else 0.0)), one)]
            second[i, j] = lst
    prod = (w @ torch.cat(mats, 1)).reshape(n, len(mats), -1)  # [N, K, F]

    def combine(lst):
        return sum(mono[:, None] * prod[:, k] for k, mono in lst)
    fe = prod[:, 0]
    dfe = torch.stack([combine(lst) for lst in first], 1)
    rows = [[combine(second[min(i, j), max(i, j)]) for j in range(dim)] for i in range(dim)]
    d2fe = torch.stack([torch.stack(r, 1) for r in rows], 1)
    return fe, dfe, d2fe


def field_jet(field: PDEField, x: torch.Tensor):
    """``u [N, O]``, ``J [N, O, D]``, ``H [N, O, D, D]`` of ``field`` at physical points ``x [N, D]``."""
    scale = field.box.scale(x.dtype)  # ds/dx per axis
    s = field.box(x)
    h, dh, d2h = _embedding_jet(field.encoding, s)
    dh = dh * scale[None, :, None]
    d2h = d2h * (scale[:, None] * scale[None, :])[None, :, :, None]
    layers = field.decoder.layers
    for layer in layers[:-1]:
        wt = layer.weight.to(x.dtype).T
        z, dz, d2z = layer(h), dh @ wt, d2h @ wt
        h = torch.tanh(z)
        slope = 1.0 - h * h  # tanh'
        curve = -2.0 * h * slope  # tanh''
        dh = slope[:, None, :] * dz
        d2h = slope[:, None, None, :] * d2z + curve[:, None, None, :] * dz[:, :, None, :] * dz[:, None, :, :]
    wt = layers[-1].weight.to(x.dtype).T
    u, du, d2u = layers[-1](h), dh @ wt, d2h @ wt  # [N, O], [N, D, O], [N, D, D, O]
    return u, du.permute(0, 2, 1), d2u.permute(0, 3, 1, 2)


class JetField(nn.Module):
    """``field`` with its residual derivatives in closed form (see the module docstring)."""

    def __init__(self, field: PDEField):
        super().__init__()
        if not jet_supported(field):
            raise ValueError("JetField needs a PDEField with a dense diagonal Gaussian embedding and a tanh MLP decoder")
        self.field = field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad and x.dtype == torch.float64):
            return self.field(x)
        u, jac, hess = field_jet(self.field, x.detach())
        dx = x - x.detach()  # zero, but carries the dependence on x
        return u + torch.einsum("nod,nd->no", jac, dx) + 0.5 * torch.einsum("node,nd,ne->no", hess, dx, dx)
