"""Occupancy-skipping rendering equals dense marching/uniform sampling on a synthetic field."""

import pytest
import torch
from torch import nn

from omnifield.backend import has_module
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.renderers.cameras import Cameras, look_at
from omnifield.renderers.occupancy import OccupancyGridConfig
from omnifield.renderers.raymarch import _march_rays, march_rays
from omnifield.renderers.rays import ray_aabb_intersect
from omnifield.renderers.volrend import render_weight_from_density
from omnifield.renderers.volume import VolumeRenderer, VolumeRendererConfig


class BoxField(nn.Module):
    """Density 8 inside the box [-0.5, 0.5]^3 (aligned with the cells of a 32^3 grid over [-1, 1]^3),
    colour varying with position, zero elsewhere."""

    def density(self, x):
        return torch.where((x.abs() < 0.5).all(dim=-1), torch.tensor(8.0), torch.tensor(0.0))

    def forward(self, x, d):
        return torch.sigmoid(3 * x), self.density(x)


def _rays(n=300):
    g = torch.Generator().manual_seed(0)
    eye = torch.tensor([[0.0, -4.0, 0.5]])
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    cams = Cameras.from_fov(c2w, 0.7, 64, 64)
    px, py = torch.rand(n, generator=g) * 64, torch.rand(n, generator=g) * 64
    return cams.generate_rays(torch.zeros(n, dtype=torch.long), px, py)


def _renderer(**kw):
    cfg = VolumeRendererConfig(grid=OccupancyGridConfig(resolution=32, warmup_steps=1, threshold=0.01), **kw)
    return VolumeRenderer(torch.tensor([-1.0, -1, -1, 1, 1, 1]), cfg)


def test_skipping_equals_dense_marching():
    field = BoxField()
    o, d = _rays()
    dense = _renderer(early_stop_eps=0.0)  # all cells occupied: dense marching
    skip = _renderer(early_stop_eps=0.0)
    skip.update_occupancy(field, 0)
    assert 0.02 < skip.grid.occupied_fraction() < 0.5
    a = dense.render_rays(field, o, d, torch.ones(3))
    b = skip.render_rays(field, o, d, torch.ones(3))
    assert b.n_samples < 0.5 * a.n_samples
    assert torch.allclose(a.rgb, b.rgb, atol=1e-5) and torch.allclose(a.opacity, b.opacity, atol=1e-5)


def test_early_termination_changes_little_and_uniform_agrees():
    field = BoxField()
    o, d = _rays()
    skip = _renderer()
    skip.update_occupancy(field, 0)
    uniform = _renderer(sampler="uniform", n_samples=2048)
    a = skip.render_rays(field, o, d, torch.ones(3))
    b = uniform.render_rays(field, o, d, torch.ones(3))
    assert torch.allclose(a.rgb, b.rgb, atol=2e-2)
    opaque = b.opacity > 0.99
    assert opaque.sum() > 20
    assert torch.allclose(a.depth[opaque], b.depth[opaque], atol=1e-2)


def test_march_rays_spec_and_twin():
    o, d = _rays(50)
    near = torch.full((50,), 3.0)
    far = torch.full((50,), 5.0)
    occ = torch.rand(8, 8, 8) > 0.5
    aabb = torch.tensor([-1.0, -1, -1, 1, 1, 1])
    ids, t0, t1 = _march_rays(o, d, near, far, occ, aabb, 0.1)
    # brute force per ray
    expected = []
    for r in range(50):
        k = 0
        while near[r] + k * 0.1 < far[r]:
            ts = float(near[r] + k * 0.1)
            te = min(ts + 0.1, float(far[r]))
            p = o[r] + d[r] * (ts + te) / 2
            ijk = torch.floor((p + 1) / 2 * 8).long().clamp(0, 7)
            if occ[ijk[0], ijk[1], ijk[2]]:
                expected.append((r, ts, te))
            k += 1
    assert len(expected) == ids.numel()
    exp = torch.tensor(expected)
    assert torch.equal(ids, exp[:, 0].long())
    assert torch.allclose(t0, exp[:, 1].float(), atol=1e-5) and torch.allclose(t1, exp[:, 2].float(), atol=1e-5)
    ids2, s0, s1 = march_rays(o, d, near, far, occ, aabb, 0.1)
    assert (ids2.numel() - ids.numel()) <= 1


def test_render_image_in_chunks_matches_single_pass():
    field = BoxField()
    r = _renderer()
    r.update_occupancy(field, 0)
    c2w = look_at(torch.tensor([[0.0, -3.0, 0.0]]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    cams = Cameras.from_fov(c2w, 0.8, 24, 20)
    small = r.render_image(field, cams, 0, torch.ones(3), chunk=37)
    big = r.render_image(field, cams, 0, torch.ones(3), chunk=100000)
    assert small["rgb"].shape == (20, 24, 3)
    assert torch.allclose(small["rgb"], big["rgb"], atol=1e-6)
    # centre pixel hits the ball, corner misses it
    assert small["opacity"][10, 12] > 0.99 and small["opacity"][0, 0] < 1e-3


def test_rays_missing_the_box_render_background():
    r = _renderer()
    o = torch.tensor([[5.0, 5.0, 5.0], [6.0, 5.0, 5.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    out = r.render_rays(BoxField(), o, d, torch.tensor([0.2, 0.4, 0.6]))
    assert torch.allclose(out.rgb, torch.tensor([[0.2, 0.4, 0.6]] * 2)) and out.n_samples == 0


def test_visual_hull_keeps_the_object_and_carves_free_space():
    field = BoxField()
    r = _renderer(early_stop_eps=0.0)
    angles = torch.linspace(0, 6.283, 9)[:-1]
    eyes = torch.stack([3 * torch.cos(angles), 3 * torch.sin(angles), 1.0 + 0 * angles], dim=-1)
    cams = Cameras.from_fov(look_at(eyes, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])), 0.9, 40, 40)
    alphas = torch.stack([r.render_image(field, cams, i)["opacity"] for i in range(len(cams))])
    kept = r.grid.carve_from_masks(cams, alphas)
    assert 0.1 < kept < 0.6
    g = r.grid
    centres = -1 + (g.cell_ijk.float() + 0.5) / 32 * 2
    allowed = g.allowed.reshape(-1)
    assert bool(allowed[(centres.abs() < 0.5).all(dim=-1)].all())  # every cell of the object survives
    assert not bool(allowed[(centres.abs() > 0.95).any(dim=-1) & (centres[:, 2].abs() < 0.5)].any())
    assert not bool(g.occupancy.reshape(-1)[~allowed].any())


def test_updates_after_carving_evaluate_only_cells_inside_the_hull():
    grid = _renderer().grid
    keep = torch.zeros(32, 32, 32, dtype=torch.bool)
    keep[8:24, 8:24, 8:24] = True
    grid.allowed.copy_(keep)
    seen = []

    def density(x):
        seen.append(x)
        return BoxField().density(x)

    for step in (0, 16, 32):  # step 0 is warm-up (every hull cell), later steps sample a quarter plus occupied
        grid.update(step, density, step_size=0.1)
    points = torch.cat(seen)
    cells = ((points + 1) / 2 * 32).long().clamp(0, 31)
    assert bool(keep[cells[:, 0], cells[:, 1], cells[:, 2]].all())  # never a carved cell
    assert len(seen[0]) == int(keep.sum()) and len(seen) == 3  # warm-up covers the whole hull
    inside = (-1 + (grid.cell_ijk.float() + 0.5) / 16).abs() < 0.5
    assert bool(grid.occupancy.reshape(-1)[inside.all(dim=-1)].all())
    assert not bool(grid.occupancy[~keep].any())


needs_nerfacc = pytest.mark.skipif(not (torch.cuda.is_available() and has_module("nerfacc")),
                                   reason="needs CUDA and nerfacc")


@pytest.mark.cuda
@needs_nerfacc
def test_nerfacc_marching_and_compositing_match_the_torch_twins_on_cuda(monkeypatch):
    field = BoxField()
    o, d = (t.cuda() for t in _rays())
    r = _renderer(early_stop_eps=0.0).cuda()
    r.update_occupancy(field, 0)
    with_nerfacc = r.render_rays(field, o, d, torch.ones(3, device="cuda"))
    monkeypatch.setenv("OMNIFIELD_BACKEND", "torch")
    twins = r.render_rays(field, o, d, torch.ones(3, device="cuda"))
    assert abs(with_nerfacc.n_samples - twins.n_samples) <= 0.01 * twins.n_samples + o.shape[0]
    torch.testing.assert_close(with_nerfacc.rgb, twins.rgb, atol=2e-3, rtol=0)
    torch.testing.assert_close(with_nerfacc.opacity, twins.opacity, atol=2e-3, rtol=0)


@pytest.mark.cuda
@needs_nerfacc
def test_nerfacc_weights_and_gradients_match_ours_on_cuda():
    from nerfacc import render_weight_from_density as nerfacc_weights

    g = torch.Generator(device="cuda").manual_seed(0)
    ray_indices = torch.sort(torch.randint(0, 40, (2000,), device="cuda", generator=g)).values
    t_starts = torch.rand(2000, device="cuda", generator=g)
    t_ends = t_starts + 0.05 * torch.rand(2000, device="cuda", generator=g)
    sigmas = (10 * torch.rand(2000, device="cuda", generator=g)).requires_grad_()
    ours = render_weight_from_density(t_starts, t_ends, sigmas, ray_indices, 40)
    (grad_ours,) = torch.autograd.grad(ours[0].square().sum(), sigmas)
    theirs = nerfacc_weights(t_starts, t_ends, sigmas, ray_indices=ray_indices, n_rays=40)
    (grad_theirs,) = torch.autograd.grad(theirs[0].square().sum(), sigmas)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad_ours, grad_theirs, atol=1e-5, rtol=1e-4)


class FogField(BoxField):
    """A thin fog filling the whole box: its weight is spread along every ray."""

    def density(self, x):
        return torch.full(x.shape[:-1], 0.6)


class WallField(BoxField):
    """A dense cube: each ray's weight sits just behind its surface."""

    def density(self, x):
        return 20 * super().density(x)


@pytest.mark.parametrize("space", ["box", "contract"])
def test_distortion_loss_is_low_on_a_surface_and_high_in_fog(space):
    origins, directions = _rays()
    aabb = torch.tensor([-1.0, -1, -1, 1, 1, 1]) * (2 if space == "contract" else 1)
    renderer = VolumeRenderer(aabb, VolumeRendererConfig(sampler="uniform", n_samples=96, space=space,
                                                         near_plane=0.1 if space == "contract" else 0.0))
    o, d = renderer.to_field_space(origins, directions)
    s0, s1 = renderer.unit_distances(o, d, renderer.sample(BoxField(), o, d))
    assert float(s0.min()) > -1e-6 and float(s1.max()) < 1 + 1e-6 and bool((s1 > s0).all())
    solid = renderer.render_rays(WallField(), origins, directions, distortion=True)
    fog = renderer.render_rays(FogField(), origins, directions, distortion=True)
    hit = solid.opacity > 0.99
    assert int(hit.sum()) > 20 and float(fog.opacity[hit].min()) > 0.5  # the fog is about as opaque
    assert float(fog.distortion[hit].mean()) > 5 * float(solid.distortion[hit].mean())
    assert renderer.render_rays(BoxField(), origins, directions).distortion is None
    # fog in front of the wall raises the loss: its gradient pushes the fog's density down
    fog_density = torch.full((), 0.3, requires_grad=True)

    class FoggyWall(WallField):
        def forward(self, x, d):
            return torch.sigmoid(3 * x), self.density(x) + fog_density * (self.density(x) == 0)

    renderer.render_rays(FoggyWall(), origins, directions, distortion=True).distortion[hit].mean().backward()
    assert float(fog_density.grad) > 0


class CountingField(WallField):
    """The dense cube, counting the points its density is asked for."""

    def __init__(self):
        super().__init__()
        self.queries = 0

    def density(self, x):
        self.queries += x.shape[0]
        return super().density(x)


def test_early_termination_keeps_the_samples_of_one_full_pass_without_evaluating_behind_surfaces():
    origins, directions = _rays()
    renderer = _renderer(early_stop_eps=1e-4, alpha_threshold=1e-3)
    near, far = ray_aabb_intersect(origins, directions, renderer.aabb)
    s = renderer._march(origins, directions, near, far, False, None)
    # the plain rule over all marched samples at once
    sigmas = WallField().density(renderer._positions(origins, directions, s))
    _, trans, alphas = render_weight_from_density(s.t_starts, s.t_ends, sigmas, s.ray_indices, origins.shape[0])
    expected = (trans >= 1e-4) & (alphas >= 1e-3)
    kept = renderer.sample(WallField(), origins, directions)
    assert torch.equal(kept.ray_indices, s.ray_indices[expected]) and torch.equal(kept.t_starts, s.t_starts[expected])
    # rays that hit the cube: the inside and back of the cube are never evaluated
    hit = torch.zeros(origins.shape[0], dtype=torch.bool).index_fill_(0, s.ray_indices[trans < 1e-4], True)
    field = CountingField()
    renderer.sample(field, origins[hit], directions[hit])
    marched = int(hit[s.ray_indices].sum())
    assert int(hit.sum()) > 30 and field.queries < 0.5 * marched


def test_renders_without_autograd_reuse_the_termination_pass_features():
    torch.manual_seed(0)
    field = RadianceFieldConfig(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=12), aabb=(-1, -1, -1, 1, 1, 1),
                                density_bias=2.0).build()
    origins, directions = _rays()
    renderer = _renderer(early_stop_eps=1e-2)
    with_grad = renderer.render_rays(field, origins, directions, torch.ones(3))
    encoded = []
    field.encoding.register_forward_hook(lambda module, args, out: encoded.append(out.shape[0]))
    with torch.no_grad():
        without = renderer.render_rays(field, origins, directions, torch.ones(3))
    assert with_grad.rgb.requires_grad and not without.rgb.requires_grad
    assert without.n_samples == with_grad.n_samples > 0
    assert without.n_samples <= sum(encoded) < 1.5 * without.n_samples  # once, in the rounds (not twice)
    for a, b in [(with_grad.rgb, without.rgb), (with_grad.depth, without.depth), (with_grad.opacity, without.opacity)]:
        torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-6)
    assert (with_grad.opacity > 0.5).sum() > 50  # the field is not empty: the comparison means something
