"""Scene spaces for real captures: contraction, NDC, the choice of space, and rendering in each."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from omnifield.renderers.cameras import look_at
from omnifield.renderers.occupancy import OccupancyGridConfig
from omnifield.renderers.space import (
    choose_space,
    contract,
    contraction_stretch,
    detect_scene_type,
    inverse_spacing,
    ndc_rays,
    nearest_depth,
    points_from_ndc,
    spacing,
)
from omnifield.renderers.volume import Samples, VolumeRenderer, VolumeRendererConfig


def test_contraction_values_and_bounds():
    x = torch.tensor([[0.3, -0.5, 0.9], [2.0, 0.0, 0.0], [4.0, 4.0, 0.0], [1e6, -3e5, 0.0]])
    y = contract(x)
    assert torch.allclose(y[0], x[0])  # inside the unit cube: unchanged
    assert torch.allclose(y[1], torch.tensor([1.5, 0.0, 0.0]))  # (2 - 1/2) * x / 2
    assert torch.allclose(y[2], torch.tensor([1.75, 1.75, 0.0]))  # (2 - 1/4) * x / 4
    assert float(y[3].abs().max()) < 2.0 and float(y[3].abs().max()) > 1.999
    # continuous across the unit cube's surface, and the stretch is d|x|/d|y| = 1 / (2 - |y|)^2
    eps = 1e-4
    a, b = contract(torch.tensor([[1 - eps, 0.2, 0.0]])), contract(torch.tensor([[1 + eps, 0.2, 0.0]]))
    assert float((a - b).norm()) < 3 * eps
    r = torch.tensor([3.0])
    dy = (2 - 1 / (r + 1e-3)) - (2 - 1 / r)
    stretch = float(contraction_stretch(torch.tensor([[float(2 - 1 / r), 0.0, 0.0]])))
    assert stretch == pytest.approx(1e-3 / float(dy), rel=1e-2)
    assert float(contraction_stretch(torch.tensor([[0.5, 0.5, 0.5]]))) == 1.0


def test_spacing_is_linear_then_disparity_and_inverts():
    t = torch.tensor([0.0, 0.5, 1.0, 2.0, 10.0, 1000.0], dtype=torch.float64)
    s = spacing(t)
    assert torch.allclose(s, torch.tensor([0.0, 0.25, 0.5, 0.75, 0.95, 0.9995], dtype=torch.float64))
    assert torch.allclose(inverse_spacing(s), t)


def _nerf_ndc_reference(h, w, focal, near, rays_o, rays_d):
    """The original NeRF ``ndc_rays`` (run_nerf_helpers.py), written out plainly."""
    t = -(near + rays_o[..., 2]) / rays_d[..., 2]
    rays_o = rays_o + t[..., None] * rays_d
    o0 = -1.0 / (w / (2.0 * focal)) * rays_o[..., 0] / rays_o[..., 2]
    o1 = -1.0 / (h / (2.0 * focal)) * rays_o[..., 1] / rays_o[..., 2]
    o2 = 1.0 + 2.0 * near / rays_o[..., 2]
    d0 = -1.0 / (w / (2.0 * focal)) * (rays_d[..., 0] / rays_d[..., 2] - rays_o[..., 0] / rays_o[..., 2])
    d1 = -1.0 / (h / (2.0 * focal)) * (rays_d[..., 1] / rays_d[..., 2] - rays_o[..., 1] / rays_o[..., 2])
    d2 = -2.0 * near / rays_o[..., 2]
    return torch.stack([o0, o1, o2], -1), torch.stack([d0, d1, d2], -1)


def test_ndc_rays_match_the_nerf_formula():
    g = torch.Generator().manual_seed(0)
    origins = 0.2 * torch.randn(64, 3, generator=g, dtype=torch.float64)
    dirs = torch.randn(64, 3, generator=g, dtype=torch.float64) * torch.tensor([0.3, 0.3, 1.0], dtype=torch.float64)
    dirs[:, 2] = -dirs[:, 2].abs() - 0.2
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    h, w, focal, near = 378, 504, 407.0, 1.0
    o_ref, d_ref = _nerf_ndc_reference(h, w, focal, near, origins, dirs)
    o, d = ndc_rays(origins, dirs, (focal / (w / 2), focal / (h / 2)), near)
    assert torch.allclose(o, o_ref, atol=1e-9)
    assert torch.allclose(d, d_ref / d_ref.norm(dim=-1, keepdim=True), atol=1e-9)
    # a world point at depth D on the ray lands at NDC depth 1 - 2 near / D, on the NDC ray
    depth = torch.full((64,), 7.0, dtype=torch.float64)
    p = origins + ((-depth - origins[:, 2]) / dirs[:, 2])[:, None] * dirs
    p_ndc = torch.stack([-(focal / (w / 2)) * p[:, 0] / p[:, 2], -(focal / (h / 2)) * p[:, 1] / p[:, 2],
                         1 + 2 * near / p[:, 2]], -1)
    assert torch.allclose(p_ndc[:, 2], 1 - 2 * near / depth)
    assert torch.allclose(points_from_ndc(p_ndc, (focal / (w / 2), focal / (h / 2)), near), p)  # the inverse map
    along = ((p_ndc - o) * d).sum(-1, keepdim=True)
    assert torch.allclose(o + along * d, p_ndc, atol=1e-9)


def _ring(n=12, radius=3.0, height=0.5):
    angles = torch.arange(n) * 2 * math.pi / n
    eye = torch.stack([radius * torch.cos(angles), radius * torch.sin(angles), torch.full((n,), height)], -1)
    return look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))


def _forward_rig(n=9, spread=0.3, look=(0.2, -1.0, 0.1)):
    eye = torch.stack(torch.meshgrid(torch.linspace(-spread, spread, 3), torch.linspace(-spread, spread, 3),
                                     indexing="ij"), -1).reshape(-1, 2)[:n]
    eye = torch.cat([eye[:, :1], torch.zeros(n, 1), eye[:, 1:]], -1)
    target = torch.tensor(look) * 10
    return look_at(eye, target, torch.tensor([0.0, 0.0, 1.0]))


def test_scene_type_detection():
    assert detect_scene_type(_ring(), has_alpha=True) == "object"
    assert detect_scene_type(_ring(), has_alpha=False) == "unbounded"
    assert detect_scene_type(_forward_rig(), has_alpha=False) == "forward"
    half = _ring(12)[:6]  # a half orbit around the scene is not forward-facing
    assert detect_scene_type(half, has_alpha=False) == "unbounded"


def test_forward_space_frame_looks_down_minus_z():
    c2w = _forward_rig()
    n = len(c2w)
    space = choose_space("forward", c2w, torch.full((n,), 400.0), torch.full((n,), 400.0), 504, 378, 4.0)
    rot = torch.tensor(space["space_rotation"], dtype=torch.float64).reshape(3, 3)
    assert torch.allclose(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=1e-9)
    assert float(torch.det(rot)) == pytest.approx(1.0)
    mean_view = -c2w[:, :3, 2].double().mean(0)
    assert torch.allclose(rot @ (mean_view / mean_view.norm()), torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64),
                          atol=1e-6)
    assert space["ndc_near"] == pytest.approx(3.0)
    assert space["ndc_focal"] == pytest.approx((400 / 252, 400 / 189))
    with pytest.raises(ValueError, match="near plane"):
        choose_space("forward", c2w, torch.full((n,), 400.0), torch.full((n,), 400.0), 504, 378, None)


def test_unbounded_space_puts_the_cameras_in_the_unit_ball():
    c2w = _ring(radius=5.0)
    c2w[:, :3, 3] += torch.tensor([10.0, -3.0, 2.0])
    space = choose_space("unbounded", c2w, torch.ones(12), torch.ones(12), 100, 100, None)
    renderer = VolumeRenderer(space.pop("field")["aabb"], VolumeRendererConfig(**space))
    o, _ = renderer.to_field_space(c2w[:, :3, 3], -c2w[:, :3, 2])
    assert float(o.norm(dim=-1).max()) == pytest.approx(1.0, abs=1e-5)


def test_nearest_depth_from_bounds_or_points():
    c2w = _forward_rig()
    assert nearest_depth(c2w, None, torch.tensor([[2.5, 9.0], [3.0, 8.0]])) == 2.5
    views = -c2w[:, :3, 2]
    points = (c2w[:, None, :3, 3] + views[:, None] * torch.linspace(4.0, 20.0, 50)[None, :, None]).reshape(-1, 3)
    assert nearest_depth(c2w, points, None) == pytest.approx(4.0, rel=0.2)
    assert nearest_depth(c2w, None, None) is None


class _Ball(nn.Module):
    """Density ``sigma`` inside a ball of radius ``r`` of the field's input space, grey colour."""

    def __init__(self, sigma: float, radius: float):
        super().__init__()
        self.sigma, self.radius = sigma, radius

    def density(self, x):
        return torch.where(x.norm(dim=-1) < self.radius, torch.full_like(x[..., 0], self.sigma), torch.zeros_like(x[..., 0]))

    def forward(self, x, d):
        return torch.full_like(x, 0.5), self.density(x)


@pytest.mark.parametrize("sampler", ["uniform", "occupancy"])
def test_contracted_rendering_matches_the_analytic_opacity(sampler):
    """A ray through the centre of a ball crosses a chord of length 2r: opacity 1 - exp(-sigma 2r), and its
    expected depth is analytic too. The space is shifted and scaled, so depths come back in capture units."""
    sigma, radius, scale = 2.0, 0.5, 0.25
    cfg = VolumeRendererConfig(sampler=sampler, space="contract", space_center=(1.0, 2.0, 3.0), space_scale=scale,
                               n_samples=1024, near_plane=0.0, early_stop_eps=0.0,
                               grid=OccupancyGridConfig(resolution=64, warmup_steps=1, update_every=1))
    renderer = VolumeRenderer((-2, -2, -2, 2, 2, 2), cfg)
    field = _Ball(sigma, radius)
    torch.manual_seed(0)
    renderer.update_occupancy(field, 0)
    start = torch.tensor([[1.0 - 0.9 / scale, 2.0, 3.0]])  # 0.9 model units left of the centre
    out = renderer.render_rays(field, start, torch.tensor([[1.0, 0.0, 0.0]]))
    expected = 1 - math.exp(-sigma * 2 * radius)
    assert float(out.opacity) == pytest.approx(expected, abs=5e-3)
    # depth = sum of weight x distance (model units: entry at 0.4, then the exponential's mean within the chord)
    length = 2 * radius
    mean_in = (1 - math.exp(-sigma * length) * (1 + sigma * length)) / (sigma * expected)
    assert float(out.depth) == pytest.approx(expected * (0.4 + mean_in) / scale, rel=1e-2)
    # a ray that misses the ball travels to the far plane through empty space: transparent
    miss = renderer.render_rays(field, torch.tensor([[1.0, 2.0 - 0.9 / scale, 3.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
    assert float(miss.opacity) == pytest.approx(0.0, abs=1e-6)


def test_contracted_comb_reaches_the_far_background():
    """Density only in the contracted shell beyond |y| = 1.9 (world distances > 10): every ray ends there."""
    cfg = VolumeRendererConfig(sampler="uniform", space="contract", n_samples=256)
    renderer = VolumeRenderer((-2, -2, -2, 2, 2, 2), cfg)

    class Shell(_Ball):
        def density(self, x):
            return torch.where(x.abs().amax(-1) > 1.9, torch.full_like(x[..., 0], 10.0), torch.zeros_like(x[..., 0]))

    dirs = torch.nn.functional.normalize(torch.randn(32, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    out = renderer.render_rays(Shell(0, 0), torch.zeros(32, 3), dirs)
    assert bool((out.opacity > 0.999).all())
    assert bool((out.depth > 10).all())


def test_ndc_rendering_places_a_wall_at_its_depth():
    """A wall at world depth D in front of the reference camera sits at NDC z = 1 - 2n/D; the central ray's
    NDC depth from the near plane (z = -1) is therefore 2 - 2n/D."""
    near, depth_world = 1.0, 5.0
    z_wall = 1 - 2 * near / depth_world
    cfg = VolumeRendererConfig(sampler="occupancy", space="ndc", ndc_focal=(1.5, 2.0), ndc_near=near,
                               n_steps_per_diagonal=2048, early_stop_eps=0.0)
    renderer = VolumeRenderer((-1.25, -1.25, -1.0, 1.25, 1.25, 1.0), cfg)

    class Wall(_Ball):
        def density(self, x):
            return torch.where(x[..., 2] > z_wall, torch.full_like(x[..., 0], 1e4), torch.zeros_like(x[..., 0]))

    out = renderer.render_rays(Wall(0, 0), torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -1.0]]))
    assert float(out.opacity) == pytest.approx(1.0, abs=1e-4)
    assert float(out.depth) == pytest.approx(2 - 2 * near / depth_world, abs=2e-3)


def test_box_space_leaves_rays_untouched():
    renderer = VolumeRenderer((-1, -1, -1, 1, 1, 1), VolumeRendererConfig())
    o, d = torch.randn(5, 3), torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    o2, d2 = renderer.to_field_space(o, d)
    assert o2 is o and d2 is d


def _rotation_about_z(angle: float) -> tuple:
    c, s = math.cos(angle), math.sin(angle)
    return (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("space", ["box", "contract", "ndc"])
def test_unit_depth_of_a_point_is_its_ray_coordinate(space):
    """A point at distance t along a capture ray lies at the ray coordinate that :meth:`unit_distances` gives a
    sample at t in the renderer's own space: t itself (box), t x scale (contract, moved and rotated), or the
    point's distance along the NDC ray, computed here with NeRF's formula."""
    g = torch.Generator().manual_seed(3)
    if space == "box":
        cfg, aabb = VolumeRendererConfig(), (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
        origins = torch.tensor([-3.0, 0.0, 0.0]) + 0.2 * torch.randn(16, 3, generator=g, dtype=torch.float64)
        dirs = torch.tensor([1.0, 0.0, 0.0]) + 0.1 * torch.randn(16, 3, generator=g, dtype=torch.float64)
        distance = 2.6 + 0.8 * torch.rand(16, generator=g, dtype=torch.float64)
    elif space == "contract":
        cfg = VolumeRendererConfig(space="contract", space_center=(1.0, 2.0, 3.0), space_scale=0.25,
                                   space_rotation=_rotation_about_z(0.7))
        aabb = (-2.0, -2.0, -2.0, 2.0, 2.0, 2.0)
        origins = torch.tensor([1.0, 2.0, 3.0]) + torch.randn(16, 3, generator=g, dtype=torch.float64)
        dirs = torch.randn(16, 3, generator=g, dtype=torch.float64)
        distance = 50.0 * torch.rand(16, generator=g, dtype=torch.float64)
    else:
        focal, near = (1.5, 2.0), 1.0
        cfg = VolumeRendererConfig(space="ndc", ndc_focal=focal, ndc_near=near)
        aabb = (-1.25, -1.25, -1.0, 1.25, 1.25, 1.0)
        origins = 0.2 * torch.randn(16, 3, generator=g, dtype=torch.float64)
        dirs = torch.tensor([0.0, 0.0, -1.0]) + 0.1 * torch.randn(16, 3, generator=g, dtype=torch.float64)
        distance = 1.5 + 30.0 * torch.rand(16, generator=g, dtype=torch.float64)
    renderer = VolumeRenderer(aabb, cfg).double()
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    points = origins + dirs * distance[:, None]
    o, d = renderer.to_field_space(origins, dirs)
    if space == "box":
        t = distance
    elif space == "contract":
        t = distance * 0.25
    else:
        p_ndc = torch.stack([-focal[0] * points[:, 0] / points[:, 2], -focal[1] * points[:, 1] / points[:, 2],
                             1 + 2 * near / points[:, 2]], -1)
        t = ((p_ndc - o) * d).sum(-1)
        torch.testing.assert_close(o + t[:, None] * d, p_ndc)  # the point is on the NDC ray
    rays = torch.arange(16)
    expected, _ = renderer.unit_distances(o, d, Samples(rays, t, t))
    got = renderer.unit_depth_of(origins, dirs, points)
    torch.testing.assert_close(got, expected.clamp(0, 1))
    assert 0.0 < float(got.min()) and float(got.max()) < 1.0  # the points lie inside the rays' spans


def test_rendered_unit_depth_finds_a_wall_and_counts_empty_rays_as_far():
    """An opaque wall across the box: each ray's expected unit depth is the wall point's (within a step);
    a ray through empty space stops nowhere, so its unit depth is 1."""
    cfg = VolumeRendererConfig(sampler="uniform", n_samples=512, early_stop_eps=0.0)
    renderer = VolumeRenderer((-1, -1, -1, 1, 1, 1), cfg)

    class Wall(_Ball):
        def density(self, x):
            return torch.where(x[..., 0] > 0.3, torch.full_like(x[..., 0], 1e4), torch.zeros_like(x[..., 0]))

    g = torch.Generator().manual_seed(0)
    origins = torch.tensor([-3.0, 0.0, 0.0]) + 0.3 * torch.randn(8, 3, generator=g)
    dirs = torch.tensor([1.0, 0.0, 0.0]) + 0.2 * torch.randn(8, 3, generator=g)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    hit = origins + dirs * ((0.3 - origins[:, 0]) / dirs[:, 0])[:, None]
    out = renderer.render_rays(Wall(0, 0), origins, dirs, unit_depth=True)
    torch.testing.assert_close(out.unit_depth, renderer.unit_depth_of(origins, dirs, hit), atol=4e-3, rtol=0)
    empty = renderer.render_rays(_Ball(0.0, 0.5), origins, dirs, unit_depth=True)
    torch.testing.assert_close(empty.unit_depth, torch.ones(8))


@pytest.mark.parametrize("space", ["box", "contract", "ndc"])
def test_stopping_points_map_a_rendered_depth_back_to_the_capture(space):
    """A wall at a known point: the rendered depth and opacity of a ray that hits it give the point back, in the
    capture's coordinates, for each space (NDC depths are NDC distances, mapped back by the inverse warp)."""
    if space == "box":
        cfg, aabb, wall = VolumeRendererConfig(sampler="uniform", n_samples=1024), (-1, -1, -1, 1, 1, 1), 0.3
    elif space == "contract":
        cfg = VolumeRendererConfig(sampler="uniform", space="contract", space_center=(1.0, 2.0, 3.0), space_scale=0.5,
                                   space_rotation=_rotation_about_z(0.7), n_samples=1024)
        aabb, wall = (-2, -2, -2, 2, 2, 2), 0.3
    else:
        cfg = VolumeRendererConfig(sampler="uniform", space="ndc", ndc_focal=(1.5, 2.0), ndc_near=1.0, n_samples=1024,
                                   space_scale=0.5, space_rotation=_rotation_about_z(0.3))
        aabb, wall = (-1.25, -1.25, -1.0, 1.25, 1.25, 1.0), 0.6
    cfg = VolumeRendererConfig(**{**cfg.__dict__, "early_stop_eps": 0.0})
    renderer = VolumeRenderer(aabb, cfg)

    class Wall(_Ball):  # opaque beyond a plane of the field's input space
        def density(self, x):
            return torch.where(x[..., 2] > wall, torch.full_like(x[..., 0], 1e4), torch.zeros_like(x[..., 0]))

    g = torch.Generator().manual_seed(0)
    toward = torch.tensor([0.0, 0.0, 1.0]) @ renderer.space_rotation  # the wall's normal in the capture
    origins = renderer.space_center - 0.8 / cfg.space_scale * toward + 0.05 * torch.randn(6, 3, generator=g)
    if space == "ndc":  # NDC rays look down -z of the frame; the wall is far away in front
        origins = renderer.space_center + 0.05 * torch.randn(6, 3, generator=g)
        toward = -toward
    dirs = toward + 0.1 * torch.randn(6, 3, generator=g)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    out = renderer.render_rays(Wall(0, 0), origins, dirs)
    assert float(out.opacity.min()) > 0.999
    points = renderer.stopping_points(origins, dirs, out.depth, out.opacity)
    # the points lie on their rays, where the wall is
    along = ((points - origins) * dirs).sum(-1, keepdim=True)
    torch.testing.assert_close(points, origins + along * dirs, atol=1e-4, rtol=0)
    frame = (points - renderer.space_center) @ renderer.space_rotation.T * cfg.space_scale
    wall_z = 2.0 * cfg.ndc_near / (wall - 1.0) if space == "ndc" else wall  # NDC z' = 1 + 2 near / z
    torch.testing.assert_close(frame[:, 2], torch.full((6,), wall_z), atol=0.02 * abs(wall_z), rtol=0)
