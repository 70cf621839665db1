"""Proposal sampling (mip-NeRF 360 / nerfacto): histogram resampling, the interlevel loss, and the renderer's
proposal fields learning where a field's weight is."""

import math

import pytest
import torch
from torch import nn

from omnifield.renderers.proposal import (
    anneal_exponent,
    histogram_weights,
    interlevel_loss,
    outer_weights,
    resample_edges,
    uniform_edges,
)
from omnifield.renderers.volume import (
    PROPOSAL_FIELD_SAMPLES,
    VolumeRenderer,
    VolumeRendererConfig,
    sampler_settings,
    sampling_summary,
)


def _sorted_edges(n_rays, n_bins, generator):
    inner = torch.rand(n_rays, n_bins - 1, generator=generator).sort(-1).values
    return torch.cat([torch.zeros(n_rays, 1), inner, torch.ones(n_rays, 1)], -1)


def test_outer_weights_sum_every_overlapping_bin():
    g = torch.Generator().manual_seed(0)
    edges, env = _sorted_edges(7, 9, g), _sorted_edges(7, 13, g)
    env_w = torch.rand(7, 13, generator=g)
    got = outer_weights(edges, env, env_w)
    for r in range(7):  # plainly: a bin [a, b) of the envelope overlaps [s, e) when a < e and b > s
        for i in range(9):
            s, e = edges[r, i], edges[r, i + 1]
            want = sum(float(env_w[r, j]) for j in range(13) if env[r, j] < e and env[r, j + 1] > s)
            assert float(got[r, i]) == pytest.approx(want, abs=1e-5)


def test_resampling_inverts_the_cumulative_distribution():
    # uniform weights on uniform bins: evaluation quantiles i / n land on i / n
    edges = uniform_edges(2, 10, None, torch.zeros(1))
    assert torch.allclose(resample_edges(edges, torch.ones(2, 10), 5, None), torch.linspace(0, 1, 6).expand(2, 6),
                          atol=1e-6)
    # all weight in bin [0.3, 0.4): the edges gather there, apart from the padding's share elsewhere
    w = torch.zeros(1, 10)
    w[0, 3] = 1.0
    new = resample_edges(edges[:1], w, 64, None)
    inside = ((new >= 0.3) & (new <= 0.4)).float().mean()
    mass = 1.0 / (1.0 + 10 * 0.01)  # the bin's share of the padded histogram
    assert float(inside) == pytest.approx(mass, abs=2.0 / 65)
    assert bool((new[:, 1:] >= new[:, :-1]).all())
    # exponent 0 (the start of annealing) ignores the weights: uniform again
    flat = resample_edges(edges[:1], w + 1e-3, 5, None, exponent=0.0)
    assert torch.allclose(flat, torch.linspace(0, 1, 6)[None], atol=1e-6)
    # stratified: quantiles (i + shift) / (n + 1), sorted, inside [0, 1]
    shifted = resample_edges(edges, torch.ones(2, 10), 8, torch.tensor([0.0, 0.999]))
    assert torch.allclose(shifted[0], torch.arange(9.0) / 9, atol=1e-6)
    assert bool((shifted[1] > shifted[0]).all()) and float(shifted.max()) <= 1.0


def test_interlevel_loss_is_zero_for_a_bounding_proposal_and_trains_only_the_proposal():
    g = torch.Generator().manual_seed(1)
    edges = _sorted_edges(4, 16, g)
    final = torch.rand(4, 16, generator=g) * 0.05
    # the same histogram bounds itself: no loss
    assert torch.allclose(interlevel_loss(edges, final, [(edges, final.clone())]), torch.zeros(4))
    # a proposal with no weight where the final weights are pays sum(w^2 / w) / n = mean(w)
    env = torch.zeros(4, 16, requires_grad=True)
    loss = interlevel_loss(edges, final.requires_grad_(), [(edges, env)])
    assert torch.allclose(loss, final.detach().mean(-1), rtol=1e-4)
    loss.sum().backward()
    assert final.grad is None and float(env.grad.abs().sum()) > 0


def test_histogram_weights_match_the_packed_quadrature():
    t = torch.tensor([[0.0, 0.5, 1.5, 2.0]])
    sigma = torch.tensor([[0.0, 2.0, 1.0]])
    w = histogram_weights(sigma, t)
    expected = [0.0, 1 - math.exp(-2.0), math.exp(-2.0) * (1 - math.exp(-0.5))]
    assert torch.allclose(w[0], torch.tensor(expected), atol=1e-6)


def test_anneal_exponent_rises_from_zero_to_one():
    values = [anneal_exponent(s, 100) for s in range(0, 130, 10)]
    assert values[0] == 0.0 and values[-1] == 1.0 and values[10] == 1.0
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert anneal_exponent(0, 0) == 1.0


class _Ball(nn.Module):
    """Density ``sigma`` inside a ball of radius ``r`` around ``centre``, grey colour."""

    def __init__(self, sigma: float, radius: float, centre=(0.0, 0.0, 0.0)):
        super().__init__()
        self.sigma, self.radius, self.centre = sigma, radius, torch.tensor(centre)

    def density(self, x):
        inside = (x - self.centre).norm(dim=-1) < self.radius
        return torch.where(inside, torch.full_like(x[..., 0], self.sigma), torch.zeros_like(x[..., 0]))

    def forward(self, x, d):
        return torch.full_like(x, 0.5), self.density(x)


@pytest.mark.parametrize("space", ["box", "contract"])
def test_proposal_fields_learn_where_the_weight_is(space):
    """Trained by the interlevel loss alone against a fixed ball, the proposal fields move most of the
    radiance field's 16 samples per ray into the ball (fewer than a quarter are there before), and the
    opacity of the ray through its centre comes out near the analytic one."""
    sigma, radius = 20.0, 0.15
    centre = (0.3, -0.2, 0.1)
    cfg = VolumeRendererConfig(sampler="proposal", space=space, n_samples=16, proposal_samples=(32, 16),
                               proposal_resolutions=(32, 64), proposal_anneal_steps=20, near_plane=0.0)
    torch.manual_seed(0)
    renderer = VolumeRenderer((-1, -1, -1, 1, 1, 1) if space == "box" else (-2, -2, -2, 2, 2, 2), cfg)
    field = _Ball(sigma, radius, centre)
    g = torch.Generator().manual_seed(0)

    def rays(n):  # from outside the ball's neighbourhood, through points inside it
        targets = torch.tensor(centre) + 0.5 * radius * (2 * torch.rand(n, 3, generator=g) - 1)
        origins = torch.tensor([-0.9, 0.0, 0.0]) + 0.05 * torch.randn(n, 3, generator=g)
        return origins, torch.nn.functional.normalize(targets - origins, dim=-1)

    o, d = rays(64)

    def inside_share():
        with torch.no_grad():
            s = renderer.sample(field, o, d)
            mids = 0.5 * (s.t_starts + s.t_ends)
            x = o[s.ray_indices] + d[s.ray_indices] * mids[:, None]
        return float(((x - torch.tensor(centre)).norm(dim=-1) < radius).float().mean())

    before = inside_share()
    optimizer = torch.optim.Adam(renderer.parameters(), lr=1e-2, eps=1e-15)
    for step in range(150):
        renderer.update_occupancy(field, step)
        out = renderer.render_rays(field, *rays(256), stratified=True, interlevel=True)
        optimizer.zero_grad()
        out.interlevel.mean().backward()
        optimizer.step()
    after = inside_share()
    assert before < 0.25 and after > 0.5, (before, after)
    with torch.no_grad():
        centre_ray = renderer.render_rays(field, torch.tensor([[-0.9, -0.2, 0.1]]), torch.tensor([[1.0, 0.0, 0.0]]))
    assert float(centre_ray.opacity) == pytest.approx(1 - math.exp(-sigma * 2 * radius), abs=0.05)
    assert centre_ray.n_samples == 16


def test_proposal_sampler_settings_are_checked():
    with pytest.raises(ValueError, match="one entry per level"):
        VolumeRendererConfig(sampler="proposal", proposal_samples=(64,), proposal_resolutions=(128, 256))
    with pytest.raises(ValueError, match="sampler must be one of"):
        VolumeRendererConfig(sampler="importance")
    # the proposal fields are the renderer's parameters; other samplers have none
    assert len(list(VolumeRenderer((-1, -1, -1, 1, 1, 1), VolumeRendererConfig()).parameters())) == 0
    renderer = VolumeRenderer((-1, -1, -1, 1, 1, 1), VolumeRendererConfig(sampler="proposal"))
    assert len(renderer.proposals) == 2 and renderer.jitter_shape(5) == (5, 3)


def test_auto_sampler_takes_proposals_for_scenes_and_the_occupancy_grid_for_objects():
    assert sampler_settings("auto", "box") == {"sampler": "occupancy"}
    for space in ("ndc", "contract"):
        assert sampler_settings("auto", space) == {"sampler": "proposal", "n_samples": PROPOSAL_FIELD_SAMPLES}
    assert sampler_settings("uniform", "contract") == {"sampler": "uniform"}
    with pytest.raises(ValueError, match="sampler must be auto or one of"):
        sampler_settings("importance", "box")
    cfg = VolumeRendererConfig(**sampler_settings("auto", "ndc"))
    assert sampling_summary(cfg) == f"proposal sampling (64 + 32 -> {PROPOSAL_FIELD_SAMPLES} samples per ray)"
