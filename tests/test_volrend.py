"""Compositing against analytic answers and a plain per-ray loop."""

import math

import torch

from omnifield.renderers.volrend import (
    accumulate_along_rays,
    distortion_per_ray,
    exclusive_segment_cumsum,
    render_weight_from_density,
)


def test_constant_density_slab_matches_analytic_transmittance():
    sigma, n, length = 0.7, 400, 3.0
    t = torch.linspace(0.0, length, n + 1)
    ids = torch.zeros(n, dtype=torch.long)
    w, trans, _ = render_weight_from_density(t[:-1], t[1:], torch.full((n,), sigma), ids, 1)
    assert torch.allclose(trans, torch.exp(-sigma * t[:-1]), atol=1e-5)
    opacity = accumulate_along_rays(w, None, ids, 1)
    assert abs(float(opacity) - (1 - math.exp(-sigma * length))) < 1e-5


def test_piecewise_slab_with_colour():
    # two slabs: sigma 2 on [0,1] red, sigma 5 on [1,1.5] green, background blue
    t = torch.linspace(0.0, 1.5, 301)
    mids = (t[:-1] + t[1:]) / 2
    sig = torch.where(mids < 1.0, torch.tensor(2.0), torch.tensor(5.0))
    col = torch.where((mids < 1.0)[:, None], torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]))
    ids = torch.zeros(300, dtype=torch.long)
    w, _, _ = render_weight_from_density(t[:-1], t[1:], sig, ids, 1)
    rgb = accumulate_along_rays(w, col, ids, 1)[0]
    red = 1 - math.exp(-2.0)
    green = math.exp(-2.0) * (1 - math.exp(-2.5))
    assert torch.allclose(rgb, torch.tensor([red, green, 0.0]), atol=1e-5)


def test_segment_cumsum_matches_loop():
    g = torch.Generator().manual_seed(1)
    counts = torch.tensor([0, 3, 1, 0, 5, 2])
    ids = torch.repeat_interleave(torch.arange(6), counts)
    vals = torch.rand(int(counts.sum()), generator=g)
    got = exclusive_segment_cumsum(vals, ids, 6)
    expected = []
    for r in range(6):
        acc = 0.0
        for v in vals[ids == r]:
            expected.append(acc)
            acc += float(v)
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)


def test_weights_gradients_match_dense_formula():
    sig = torch.rand(7, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1, 8, dtype=torch.float64)
    ids = torch.zeros(7, dtype=torch.long)
    w, _, _ = render_weight_from_density(t[:-1], t[1:], sig, ids, 1)
    delta = t[1:] - t[:-1]
    dense_t = torch.exp(-torch.cat([torch.zeros(1, dtype=sig.dtype), torch.cumsum(sig * delta, 0)[:-1]]))
    dense_w = dense_t * (1 - torch.exp(-sig * delta))
    up = torch.rand(7, dtype=torch.float64)
    g1 = torch.autograd.grad((w * up).sum(), sig)[0]
    g2 = torch.autograd.grad((dense_w * up).sum(), sig)[0]
    assert torch.allclose(w, dense_w) and torch.allclose(g1, g2)


def test_rows_of_equal_length_composite_as_the_packed_segments():
    """``per_ray``: the [R, n] row path gives the packed path's weights, sums and gradients."""
    g = torch.Generator().manual_seed(2)
    n_rays, per_ray = 5, 7
    t = torch.rand(n_rays, per_ray + 1, generator=g, dtype=torch.float64).sort(-1).values * 3
    sig = (torch.rand(n_rays * per_ray, generator=g, dtype=torch.float64) * 4).requires_grad_()
    colour = torch.rand(n_rays * per_ray, 3, generator=g, dtype=torch.float64)
    ids = torch.arange(n_rays).repeat_interleave(per_ray)
    t0, t1 = t[:, :-1].reshape(-1), t[:, 1:].reshape(-1)
    results = []
    for rows in (0, per_ray):
        w, trans, alpha = render_weight_from_density(t0, t1, sig, ids, n_rays, rows)
        rgb = accumulate_along_rays(w, colour, ids, n_rays, rows)
        opacity = accumulate_along_rays(w, None, ids, n_rays, rows)
        grad = torch.autograd.grad((rgb.sum() + opacity.square().sum()), sig)[0]
        results.append((w, trans, alpha, rgb, opacity, grad))
    for packed, rows in zip(*results):
        assert packed.shape == rows.shape and torch.allclose(packed, rows, atol=1e-12)


def _distortion_by_double_loop(w, s0, s1):
    """mip-NeRF 360's eq. 15 for one ray, written as the paper states it."""
    mids = (s0 + s1) / 2
    pairs = sum(w[i] * w[j] * (mids[i] - mids[j]).abs() for i in range(len(w)) for j in range(len(w)))
    return pairs + (w.square() * (s1 - s0)).sum() / 3


def test_distortion_matches_the_double_sum_with_gradients():
    g = torch.Generator().manual_seed(3)
    counts = torch.tensor([4, 0, 1, 6, 3])
    ids = torch.repeat_interleave(torch.arange(5), counts)
    edges = [torch.sort(torch.rand(int(c) + 1, generator=g, dtype=torch.float64)).values for c in counts]
    s0 = torch.cat([e[:-1] for e in edges])
    s1 = torch.cat([e[1:] for e in edges])
    w = torch.rand(int(counts.sum()), generator=g, dtype=torch.float64).requires_grad_(True)
    got = distortion_per_ray(w, s0, s1, ids, 5)
    expected = torch.stack([_distortion_by_double_loop(w[ids == r], s0[ids == r], s1[ids == r]) if counts[r] else
                            w.new_zeros(()) for r in range(5)])
    assert torch.allclose(got, expected)
    up = torch.rand(5, generator=g, dtype=torch.float64)
    assert torch.allclose(torch.autograd.grad((got * up).sum(), w)[0], torch.autograd.grad((expected * up).sum(), w)[0])


def test_distortion_analytic_values():
    # a uniform weight over the whole ray: the integral of |x - y| over the unit square, 1/3, for any binning
    for n in (1, 7, 100):
        t = torch.linspace(0, 1, n + 1, dtype=torch.float64)
        loss = distortion_per_ray(torch.full((n,), 1.0 / n, dtype=torch.float64), t[:-1], t[1:],
                                  torch.zeros(n, dtype=torch.long), 1)
        assert abs(float(loss) - 1 / 3) < 1e-12
    # two thin surfaces of weight 1/2 each, 0.6 apart: 2 * 1/4 * 0.6 (+ the tiny width terms)
    s0 = torch.tensor([0.2, 0.8], dtype=torch.float64)
    loss = distortion_per_ray(torch.tensor([0.5, 0.5], dtype=torch.float64), s0, s0 + 1e-6,
                              torch.zeros(2, dtype=torch.long), 1)
    assert abs(float(loss) - 0.3) < 1e-6
    # all the weight in one thin surface: almost nothing
    loss = distortion_per_ray(torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([0.501]),
                              torch.zeros(1, dtype=torch.long), 1)
    assert float(loss) < 1e-3
