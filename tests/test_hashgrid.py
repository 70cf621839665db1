"""Hash encoding: torch twin vs a plain loop reference, native kernel vs twin, derivatives, boundaries."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from omnifield.backend import native_kernels
from omnifield.fields import _hashgrid_native
from omnifield.fields.hashgrid import PRIMES, HashGrid, HashGridConfig, _hash_encode, hash_encode, level_layout
from tests._native import native_or_skip

# resolutions 2, 4, 8 and a 64-row table: for D=2 levels 0-1 are dense (9, 25 vertices), level 2 hashed
# (81 > 64); for D=3 level 0 is dense (27), levels 1-2 hashed.
TINY = HashGridConfig(n_levels=3, n_features_per_level=2, log2_hashmap_size=6, base_resolution=2, max_resolution=8)
# a larger mixed config for native-vs-twin parity
SMALL = HashGridConfig(n_levels=5, n_features_per_level=2, log2_hashmap_size=10, base_resolution=3, max_resolution=40)


def naive_encode(x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig) -> torch.Tensor:
    """Loop-per-point, per-level, per-corner reference with uint32 hashing (as in Instant-NGP)."""
    n, d = x.shape
    growth = (cfg.max_resolution / cfg.base_resolution) ** (1.0 / (cfg.n_levels - 1))
    table_rows = 2**cfg.log2_hashmap_size
    rows = []
    for p in range(n):
        feats, offset = [], 0
        for level in range(cfg.n_levels):
            res = math.floor(cfg.base_resolution * growth**level + 1e-6)
            dense = (res + 1) ** d <= table_rows
            pos = [x[p, i] * res for i in range(d)]
            cell = [min(max(math.floor(float(pos[i].detach())), 0), res - 1) for i in range(d)]
            frac = [pos[i] - cell[i] for i in range(d)]
            acc = torch.zeros(table.shape[1], dtype=table.dtype)
            for bits in itertools.product((0, 1), repeat=d):
                corner = [cell[i] + bits[i] for i in range(d)]
                if dense:
                    row = sum(corner[i] * (res + 1) ** i for i in range(d))
                else:
                    h = 0
                    for i in range(d):
                        h ^= (corner[i] * PRIMES[i]) & 0xFFFFFFFF
                    row = h % table_rows
                weight = 1.0
                for i in range(d):
                    weight = weight * (frac[i] if bits[i] else 1.0 - frac[i])
                acc = acc + weight * table[offset + row]
            feats.append(acc)
            offset += (res + 1) ** d if dense else table_rows
        rows.append(torch.cat(feats))
    return torch.stack(rows)


def _grid(d: int, cfg: HashGridConfig, dtype=torch.float32, seed: int = 0) -> HashGrid:
    torch.manual_seed(seed)
    grid = HashGrid(d, cfg).to(dtype)
    with torch.no_grad():
        grid.table.uniform_(-1.0, 1.0)
    return grid


def _layout(grid: HashGrid):
    return grid.resolutions, grid.offsets, grid.sizes, grid.dense


def _native(x, table, grid):
    native_or_skip("hashgrid")
    out = _hashgrid_native.try_hash_encode(x, table, *_layout(grid))
    assert out is not None, "native hashgrid kernel did not load"
    return out


def test_tiny_layout_has_dense_and_hashed_levels():
    for d, expected_dense in ((2, [True, True, False]), (3, [True, False, False])):
        resolutions, sizes, offsets, dense = level_layout(d, TINY)
        assert resolutions == [2, 4, 8]
        assert dense == expected_dense
        assert offsets == [0, sizes[0], sizes[0] + sizes[1]]


@pytest.mark.parametrize("d", [2, 3])
def test_twin_matches_naive_values_and_gradients(d):
    grid = _grid(d, TINY, torch.float64)
    torch.manual_seed(1)
    x = torch.rand(6, d, dtype=torch.float64)
    x[0] = 0.0
    x[1] = 1.0
    x[2, 0] = 0.5  # exactly on a vertex of every level
    x.requires_grad_(True)
    upstream = torch.randn(6, TINY.n_levels * 2, dtype=torch.float64)

    twin = _hash_encode(x, grid.table, *_layout(grid))
    ref = naive_encode(x, grid.table, TINY)
    torch.testing.assert_close(twin, ref, rtol=1e-12, atol=1e-12)
    g_twin = torch.autograd.grad(twin, [x, grid.table], upstream)
    g_ref = torch.autograd.grad(ref, [x, grid.table], upstream)
    torch.testing.assert_close(g_twin[0], g_ref[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_twin[1], g_ref[1], rtol=1e-12, atol=1e-12)


def test_boundary_points_hit_grid_vertices():
    """At x = 0 and x = 1 a dense level returns exactly the first / last vertex's features."""
    grid = _grid(2, TINY, torch.float64)
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    out = _hash_encode(x, grid.table, *_layout(grid)).reshape(2, 3, 2)
    for level, res in ((0, 2), (1, 4)):  # dense levels of the 2-D tiny grid
        offset = int(grid.offsets[level])
        last = res + res * (res + 1)  # vertex (res, res)
        torch.testing.assert_close(out[0, level], grid.table[offset])
        torch.testing.assert_close(out[1, level], grid.table[offset + last])


def test_twin_gradcheck_and_gradgradcheck():
    grid = _grid(3, TINY, torch.float64)
    torch.manual_seed(2)
    x = (torch.rand(4, 3, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    table = grid.table.detach().clone().requires_grad_(True)

    def fn(x, table):
        return _hash_encode(x, table, *_layout(grid))

    assert torch.autograd.gradcheck(fn, (x, table))
    assert torch.autograd.gradgradcheck(fn, (x, table))


@pytest.mark.parametrize("d", [2, 3, 4])
@pytest.mark.parametrize("n", [1, 37, 2000, 40000])  # 40000: three runs of points in the forward, the last partial
def test_native_matches_twin(d, n):
    grid = _grid(d, SMALL, seed=d)
    assert not all(grid.dense.tolist()) and any(grid.dense.tolist())
    torch.manual_seed(n)
    x = torch.rand(n, d)
    x[: min(n, 3)] = torch.tensor([0.0, 1.0, 0.5])[: min(n, 3), None]  # boundary rows
    x.requires_grad_(True)
    upstream = torch.randn(n, SMALL.n_levels * 2)

    native = _native(x, grid.table, grid)
    twin = _hash_encode(x, grid.table, *_layout(grid))
    torch.testing.assert_close(native, twin, rtol=1e-5, atol=1e-6)
    gn = torch.autograd.grad(native, [x, grid.table], upstream)
    gt = torch.autograd.grad(twin, [x, grid.table], upstream)
    scale_x = gt[0].abs().max().clamp_min(1.0)
    torch.testing.assert_close(gn[0] / scale_x, gt[0] / scale_x, rtol=1e-4, atol=1e-5)
    # a table row sums the gradients of ~n / rows points in float32, in another order in each path
    torch.testing.assert_close(gn[1], gt[1], rtol=1e-4, atol=1e-5 if n <= 2000 else 1e-4)


@pytest.mark.parametrize("features", [1, 4, 8])
def test_native_matches_twin_feature_widths(features):
    cfg = HashGridConfig(n_levels=3, n_features_per_level=features, log2_hashmap_size=8, base_resolution=4,
                         max_resolution=32)
    grid = _grid(3, cfg)
    x = torch.rand(300, 3)
    upstream = torch.randn(300, 3 * features)
    native = _native(x, grid.table, grid)
    twin = _hash_encode(x, grid.table, *_layout(grid))
    torch.testing.assert_close(native, twin, rtol=1e-5, atol=1e-6)
    (gn,) = torch.autograd.grad(native, [grid.table], upstream)
    (gt,) = torch.autograd.grad(twin, [grid.table], upstream)
    torch.testing.assert_close(gn, gt, rtol=1e-4, atol=1e-5)


def test_module_batch_shapes_use_native_and_match_twin(monkeypatch):
    native_or_skip("hashgrid")
    grid = _grid(3, SMALL)
    x = torch.rand(2, 5, 3)
    native = grid(x)
    assert native.shape == (2, 5, SMALL.n_levels * 2)
    monkeypatch.setenv("OMNIFIELD_BACKEND", "torch")
    assert native_kernels(x, "hashgrid") is None
    twin = grid(x)
    torch.testing.assert_close(native, twin, rtol=1e-5, atol=1e-6)


def _encoders(grid):
    return (lambda x: _native(x, grid.table, grid), lambda x: _hash_encode(x, grid.table, *_layout(grid)))


def _assert_close_scaled(a, b):
    scale = b.abs().max().clamp_min(1.0)
    torch.testing.assert_close(a / scale, b / scale, rtol=1e-4, atol=1e-5)


def _assert_native_matches_twin(grid, grads):
    """``grads(encode)`` (a tuple of tensors) with the native encoder and with its twin, compared one by one;
    returns the twin's."""
    native, twin = (grads(encode) for encode in _encoders(grid))
    for a, b in zip(native, twin):
        _assert_close_scaled(a, b)
    return twin


@pytest.mark.parametrize("d", [2, 3])
def test_native_double_backward_matches_twin(d):
    """Eikonal-style loss on d enc / dx: its gradient wrt the table and x (native second-order terms)."""
    grid = _grid(d, SMALL)
    torch.manual_seed(3)
    x = torch.rand(200, d)
    weights = torch.randn(SMALL.n_levels * 2)

    def grads(encode):
        xi = x.clone().requires_grad_(True)
        y = (encode(xi) * weights).sum()
        (gx,) = torch.autograd.grad(y, xi, create_graph=True)
        loss = (gx**2).sum() + (gx[:, 0] * xi[:, 1]).sum()
        return torch.autograd.grad(loss, [grid.table, xi])

    twin = _assert_native_matches_twin(grid, grads)
    assert all(g.abs().max() > 0 for g in twin)  # the second-order terms compared are not all zero


def test_native_double_backward_through_table_gradient():
    """A penalty on d enc / d table (weighted by upstream u) differentiated wrt x and u."""
    grid = _grid(3, SMALL)
    torch.manual_seed(4)
    x = torch.rand(150, 3)
    u = torch.randn(150, SMALL.n_levels * 2)
    r = torch.randn_like(grid.table)

    def grads(encode):
        xi, ui = x.clone().requires_grad_(True), u.clone().requires_grad_(True)
        gx, gt = torch.autograd.grad(encode(xi), [xi, grid.table], ui, create_graph=True)
        loss = (gt * r).sum() + (gx**2).sum()
        return torch.autograd.grad(loss, [xi, ui, grid.table])

    twin = _assert_native_matches_twin(grid, grads)
    assert all(g.abs().max() > 0 for g in twin)  # the second-order terms compared are not all zero


def test_native_third_order_matches_twin():
    """A mixed second derivative d2 u / dx0 dx1 in the loss, trained wrt the table (third order)."""
    grid = _grid(3, SMALL)
    torch.manual_seed(5)
    x = torch.rand(100, 3)
    weights = torch.randn(SMALL.n_levels * 2)
    r = torch.randn(100)

    def grads(encode):
        xi = x.clone().requires_grad_(True)
        u = (torch.tanh(encode(xi)) * weights).sum()
        (g,) = torch.autograd.grad(u, xi, create_graph=True)
        (h,) = torch.autograd.grad(g[:, 0].sum(), xi, create_graph=True)
        return torch.autograd.grad((h[:, 1] * r).sum(), [grid.table])

    (twin,) = _assert_native_matches_twin(grid, grads)
    assert twin.abs().max() > 0


def test_native_survives_non_finite_inputs():
    """NaN / inf coordinates must not index outside the table (they are clamped to a valid cell)."""
    grid = _grid(3, SMALL)
    x = torch.tensor([[float("nan"), 0.5, 0.5], [float("inf"), -float("inf"), 0.2], [0.3, 0.4, 0.5]])
    out = _native(x, grid.table, grid)
    assert out.shape == (3, SMALL.n_levels * 2)
    torch.testing.assert_close(out[2], _hash_encode(x[2:], grid.table, *_layout(grid))[0])


def test_public_op_falls_back_for_float64():
    grid = _grid(2, TINY, torch.float64)
    x = torch.rand(5, 2, dtype=torch.float64)
    assert _hashgrid_native.try_hash_encode(x, grid.table, *_layout(grid)) is None
    torch.testing.assert_close(hash_encode(x, grid.table, *_layout(grid)), naive_encode(x, grid.table, TINY))
