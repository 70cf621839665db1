"""Multi-resolution hash encoding (Instant-NGP, Müller et al. 2022).

Level ``l`` has resolution ``R_l = floor(base * b**l)`` with
``b = exp(ln(max/base) / (L-1))``; a point ``x in [0,1]^D`` lies in the cell
``floor(x * R_l)`` of a grid of ``(R_l + 1)^D`` vertices. Levels whose vertices
fit in the table (``(R_l+1)^D <= 2^log2_hashmap_size``) index densely
(``sum_i c_i (R_l+1)^i``), the others hash
``(XOR_i c_i * pi_i) mod T`` with Instant-NGP's primes ``pi = (1, 2654435761,
805459861, 3674653429)``. Features of the ``2^D`` corners are blended
(bi/trilinear) and the levels concatenated: ``[N, D] -> [N, L*F]``.

:func:`hash_encode` is the public op: the native CPU kernel when available,
else :func:`_hash_encode`, the vectorised pure-torch twin (the reference in
tests, and the path for float64/gradcheck and for CUDA tensors). The native
path is differentiable twice (its second-order terms are native too, for
eikonal and PDE losses on ``d enc / dx``); third derivatives go through the
twin automatically.
Its output is a transposed ``[N, L*F]`` view of a feature-major buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from omnifield.backend import resolve_implementation
from omnifield.config import register_config
from omnifield.fields.encoding import Encoding
from omnifield.fields.grid_lookup import corner_offsets, multilinear_weights

PRIMES = (1, 2654435761, 805459861, 3674653429)


@register_config("hashgrid")
@dataclass
class HashGridConfig:
    """Hash-grid settings (defaults: Instant-NGP's, with a smaller table for CPU)."""

    n_levels: int = 16
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048
    init_scale: float = 1e-4
    implementation: str = "auto"  # auto | omnifield | tcnn (auto = tiny-cuda-nn on CUDA when installed)

    def build(self, n_input_dims: int) -> Encoding:
        if resolve_implementation(self.implementation, "hash grid") == "tcnn":
            from omnifield.fields.tcnn import TcnnHashGrid

            return TcnnHashGrid(n_input_dims, self)
        return HashGrid(n_input_dims, self)


def level_layout(n_input_dims: int, cfg: HashGridConfig) -> tuple[list[int], list[int], list[int], list[bool]]:
    """Per level: resolution ``R_l``, table size, offset into the flat table, dense flag."""
    if cfg.n_levels < 1 or cfg.n_features_per_level < 1:
        raise ValueError("hash grid needs n_levels >= 1 and n_features_per_level >= 1")
    if not 1 <= cfg.log2_hashmap_size <= 30:
        raise ValueError("log2_hashmap_size must be in 1..30")
    if cfg.base_resolution < 1 or cfg.max_resolution < cfg.base_resolution:
        raise ValueError("hash grid needs 1 <= base_resolution <= max_resolution")
    growth = math.exp((math.log(cfg.max_resolution) - math.log(cfg.base_resolution)) / max(cfg.n_levels - 1, 1))
    table = 2**cfg.log2_hashmap_size
    resolutions, sizes, offsets, dense = [], [], [], []
    offset = 0
    for level in range(cfg.n_levels):
        res = int(math.floor(cfg.base_resolution * growth**level + 1e-6))
        n_vertices = (res + 1) ** n_input_dims
        is_dense = n_vertices <= table
        size = n_vertices if is_dense else table
        resolutions.append(res)
        sizes.append(size)
        offsets.append(offset)
        dense.append(is_dense)
        offset += size
    return resolutions, sizes, offsets, dense


def _hash_encode(
    x: torch.Tensor,  # [N, D] in [0, 1]
    table: torch.Tensor,  # [T_total, F]
    resolutions: torch.Tensor,  # [L] int64
    offsets: torch.Tensor,  # [L] int64
    sizes: torch.Tensor,  # [L] int64
    dense: torch.Tensor,  # [L] bool
) -> torch.Tensor:  # [N, L*F]
    """Pure-torch hash encoding (differentiable in ``x`` and ``table``, twice in ``x``)."""
    n, d = x.shape
    n_levels = resolutions.shape[0]
    res = resolutions.to(x.dtype)
    pos = x[:, None, :] * res[None, :, None]  # [N, L, D]
    cell = torch.floor(pos).detach()
    cell = torch.minimum(torch.clamp(cell, min=0.0), (res - 1.0)[None, :, None])
    frac = pos - cell  # [N, L, D]
    cell = cell.long()
    corners = corner_offsets(d, x.device)  # [C, D]
    c = cell[:, :, None, :] + corners[None, None]  # [N, L, C, D]
    w = multilinear_weights(frac, corners)  # [N, L, C]
    # dense index
    stride = (resolutions + 1)[None, :, None]  # [1, L, 1]
    dense_idx = torch.zeros_like(c[..., 0])
    mult = torch.ones_like(stride)
    for i in range(d):
        dense_idx = dense_idx + c[..., i] * mult
        mult = mult * stride
    # hashed index
    hashed = torch.zeros_like(c[..., 0])
    for i in range(d):
        hashed = torch.bitwise_xor(hashed, c[..., i] * PRIMES[i])
    hashed = torch.remainder(hashed, sizes[None, :, None])
    idx = torch.where(dense[None, :, None], dense_idx, hashed) + offsets[None, :, None]  # [N, L, C]
    feats = table[idx]  # [N, L, C, F]
    out = (w[..., None] * feats).sum(dim=2)  # [N, L, F]
    return out.reshape(n, n_levels * table.shape[1])


def hash_encode(
    x: torch.Tensor,
    table: torch.Tensor,
    resolutions: torch.Tensor,
    offsets: torch.Tensor,
    sizes: torch.Tensor,
    dense: torch.Tensor,
) -> torch.Tensor:
    """Hash encoding ``x [N, D] -> [N, L*F]``: native CPU kernel when available, else the torch twin."""
    from omnifield.fields import _hashgrid_native

    out = _hashgrid_native.try_hash_encode(x, table, resolutions, offsets, sizes, dense)
    if out is not None:
        return out
    return _hash_encode(x, table, resolutions, offsets, sizes, dense)


class HashGrid(Encoding):
    """Multi-resolution hash encoding, ``[N, D] in [0,1]^D -> [N, n_levels * n_features_per_level]``."""

    def __init__(self, n_input_dims: int, cfg: HashGridConfig | None = None):
        super().__init__()
        self.cfg = cfg or HashGridConfig()
        self.n_input_dims = n_input_dims
        self.n_output_dims = self.cfg.n_levels * self.cfg.n_features_per_level
        resolutions, sizes, offsets, dense = level_layout(n_input_dims, self.cfg)
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.long), persistent=False)
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.long), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        self.register_buffer("dense", torch.tensor(dense, dtype=torch.bool), persistent=False)
        total = offsets[-1] + sizes[-1]
        self.table = nn.Parameter(
            torch.empty(total, self.cfg.n_features_per_level).uniform_(-self.cfg.init_scale, self.cfg.init_scale)
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(0.0, 1.0)
        return hash_encode(x, self.table, self.resolutions, self.offsets, self.sizes, self.dense)
