"""GaussianScene as a field (density/rgb), SH colours, residual VQ, Compact-3DGS masks and compressed file."""

from __future__ import annotations

import math

import pytest
import torch

from omnifield.errors import OmnifieldError
from omnifield.fields.compact_gaussians import CompactConfig, CompactGaussianScene
from omnifield.fields.gaussians import SH_C0, GaussianScene, rgb_to_sh_dc
from omnifield.fields.rvq import ResidualVQ, nearest_code
from omnifield.io.splat_ofz import dequantize_u8, load_compressed, quantize_u8, save_compressed
from omnifield.renderers.splat import SplatRenderer
from tests._native import native_or_skip


def _single(opacity: float, scale: float, rgb=(0.2, 0.6, 0.9)) -> GaussianScene:
    sh = torch.zeros(1, 16, 3)
    sh[0, 0] = rgb_to_sh_dc(torch.tensor(rgb))
    return GaussianScene(torch.zeros(1, 3), torch.full((1, 3), math.log(scale)), torch.tensor([[1.0, 0, 0, 0]]),
                         torch.logit(torch.tensor([opacity])), sh)


def test_density_integrates_to_splat_opacity():
    """Along a ray through an isotropic Gaussian's centre, 1 - exp(-int sigma) equals its opacity.

    Up to the cut-off at alpha 1/255 (here 3.2 sigma), which drops 0.14 % of the optical depth.
    """
    scene = _single(0.7, 0.1).double()
    t = torch.linspace(-1.0, 1.0, 4001, dtype=torch.float64)
    pts = torch.stack([t, torch.zeros_like(t), torch.zeros_like(t)], dim=-1)
    sigma = scene.density(pts).detach()
    optical_depth = torch.trapezoid(sigma, t)
    assert abs(1 - math.exp(-float(optical_depth)) - 0.7) < 1e-3
    assert float(sigma[0]) < 1e-12  # far from the Gaussian


def test_density_of_needle_thin_and_zero_scale_gaussians_is_finite():
    """Trained scenes hold Gaussians too thin to invert their covariance in float32; masked ones have scale 0."""
    needle = _single(0.9, 0.1)
    needle.log_scales.data[0, 2] = -60.0  # exp(-60)^2 underflows float32: Sigma is singular
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.0, 0.0, 0.05]])
    sigma = needle.density(pts).detach()
    assert bool(torch.isfinite(sigma).all()) and float(sigma[2]) == 0.0
    scene = _compact(20)
    scene.mask_logits.data[:5] = -10.0  # masked out: zero scale and opacity
    assert bool(torch.isfinite(scene.density(torch.rand(50, 3) - 0.5).detach()).all())


def _dense_mixture(scene: GaussianScene, x: torch.Tensor, d: torch.Tensor):
    """Every point against every Gaussian, written out plainly (inverse covariance, full SH colour)."""
    cov = torch.stack([torch.diag(s**2) for s in scene.scales()])
    rot = torch.stack([_rotmat(q) for q in scene.quats])
    precision = torch.linalg.inv(rot @ cov @ rot.transpose(1, 2))
    diff = x[:, None, :] - scene.means[None]
    maha = torch.einsum("bni,nij,bnj->bn", diff, precision, diff)
    o = scene.opacities()
    peak = -torch.log1p(-o) / (math.sqrt(2 * math.pi) * scene.scales().min(-1).values)
    w = torch.where(o * torch.exp(-0.5 * maha) >= 1 / 255, peak * torch.exp(-0.5 * maha), 0.0)
    col = torch.stack([scene.colors_along(dd.expand(len(scene), 3)) for dd in d])  # [B, N, 3]
    sigma = w.sum(-1)
    return sigma, (w[..., None] * col).sum(1) / sigma[:, None], (peak * torch.exp(-0.5 * maha)).sum(-1)


def _rotmat(q: torch.Tensor) -> torch.Tensor:
    w, x, y, z = (q / q.norm()).tolist()
    return torch.tensor([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                         [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                         [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]], dtype=q.dtype)


def test_binned_mixture_equals_the_dense_sum_over_all_gaussians():
    """The spatial index finds every Gaussian within the cut-off, including a scene-sized one."""
    g = torch.Generator().manual_seed(0)
    n = 300
    log_scales = torch.empty(n, 3).uniform_(-4.0, -2.0, generator=g)
    log_scales[0] = math.log(2.0)  # one huge Gaussian spanning the whole box: kept on the short list
    scene = GaussianScene(torch.rand(n, 3, generator=g) * 2 - 1, log_scales, torch.randn(n, 4, generator=g),
                          torch.randn(n, generator=g) * 2, torch.randn(n, 16, 3, generator=g) * 0.3).double()
    x = (torch.rand(2000, 3, generator=g) * 2.4 - 1.2).double()
    d = torch.randn(2000, 3, generator=g).double()
    with torch.no_grad():
        rgb, sigma = scene(x, d)
        ref_sigma, ref_rgb, untruncated = _dense_mixture(scene, x, d)
        small_budget = scene.density(x, pair_budget=64)  # many chunks
    torch.testing.assert_close(sigma, ref_sigma, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(rgb, ref_rgb, rtol=1e-9, atol=1e-9)
    assert float((sigma - untruncated).abs().max()) < 0.05 * float(untruncated.max())  # the cut-off is small
    torch.testing.assert_close(small_budget, sigma, rtol=1e-12, atol=1e-12)


def test_native_mixture_matches_the_torch_twin(monkeypatch):
    """Without gradients, CPU float32 queries run the native kernel; values equal the torch pair loop."""
    native_or_skip("gaussian_mixture")
    g = torch.Generator().manual_seed(1)
    n = 500
    log_scales = torch.empty(n, 3).uniform_(-4.0, -2.0, generator=g)
    log_scales[:3] = math.log(1.5)  # a few huge ones on the short list
    scene = GaussianScene(torch.rand(n, 3, generator=g) * 2 - 1, log_scales, torch.randn(n, 4, generator=g),
                          torch.randn(n, generator=g) * 2, torch.randn(n, 16, 3, generator=g) * 0.3)
    x, d = torch.rand(4000, 3, generator=g) * 2.4 - 1.2, torch.randn(4000, 3, generator=g)
    for degree in (0, 3):
        scene.active_sh_degree = degree
        with torch.no_grad():
            native_rgb, native_sigma = scene(x, d)
            native_density = scene.density(x)
            monkeypatch.setenv("OMNIFIELD_BACKEND", "torch")
            twin_rgb, twin_sigma = scene(x, d)
            monkeypatch.delenv("OMNIFIELD_BACKEND")
        torch.testing.assert_close(native_sigma, twin_sigma, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(native_density, twin_sigma, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(native_rgb, twin_rgb, rtol=1e-4, atol=1e-5)
        assert float((twin_rgb - 0.5).abs().max()) > 0.1  # colours are not all the empty-space grey


def test_mixture_gradients_flow_to_points_and_gaussians():
    scene = _single(0.8, 0.2).double()
    x = torch.tensor([[0.1, -0.05, 0.02]], dtype=torch.float64, requires_grad=True)
    scene.density(x).sum().backward()
    r2 = float((x.detach() ** 2).sum())
    analytic = -x.detach() / 0.04 * float(scene.density(x.detach()).detach())  # d/dx of peak * exp(-r^2 / 2s^2)
    torch.testing.assert_close(x.grad, analytic)
    assert r2 > 0 and scene.means.grad is not None and float(scene.means.grad.abs().sum()) > 0


def test_rgb_is_the_density_weighted_colour():
    a, b = _single(0.5, 0.1, (1.0, 0.0, 0.0)), _single(0.5, 0.1, (0.0, 0.0, 1.0))
    scene = GaussianScene(torch.tensor([[-0.2, 0, 0], [0.2, 0, 0]]), torch.cat([a.log_scales, b.log_scales]),
                          torch.cat([a.quats, b.quats]), torch.cat([a.opacity_logits, b.opacity_logits]),
                          torch.cat([a.sh, b.sh]).detach())
    d = torch.tensor([[0.0, 0.0, 1.0]]).expand(3, 3)
    rgb = scene.rgb(torch.tensor([[-0.2, 0, 0], [0.0, 0, 0], [0.2, 0, 0]]), d)
    torch.testing.assert_close(rgb[1], torch.tensor([0.5, 0.0, 0.5]), atol=1e-5, rtol=0)
    assert rgb[0, 0] > 0.99 and rgb[2, 2] > 0.99
    out_rgb, out_sigma = scene(torch.zeros(1, 3), d[:1])
    assert out_rgb.shape == (1, 3) and out_sigma.shape == (1,)


def test_sh_colour_degree_schedule_and_view_dependence():
    scene = _single(0.5, 0.1)
    scene.sh_rest.data[0, 2, 0] = 1.0  # band 1, x-component of red: -0.4886 * x
    scene.set_sh_degree_for_step(0, 100)
    assert scene.active_sh_degree == 0
    torch.testing.assert_close(scene.colors_along(torch.tensor([[1.0, 0, 0]])), torch.tensor([[0.2, 0.6, 0.9]]))
    scene.set_sh_degree_for_step(100, 100)
    red = scene.colors_along(torch.tensor([[-1.0, 0, 0]]))[0, 0]
    assert scene.active_sh_degree == 1 and abs(float(red) - (0.2 + 0.48860251190291987)) < 1e-6
    scene.set_sh_degree_for_step(10_000, 100)
    assert scene.active_sh_degree == 3
    assert abs(SH_C0 * float(rgb_to_sh_dc(torch.tensor(0.8))) + 0.5 - 0.8) < 1e-7


def test_scene_rejects_bad_shapes():
    with pytest.raises(ValueError, match="GaussianScene expects"):
        GaussianScene(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2), torch.zeros(2, 5, 3))


def test_nearest_code_matches_brute_force_distances():
    g = torch.Generator().manual_seed(3)
    x, codes = torch.randn(500, 4, generator=g), torch.randn(64, 4, generator=g)
    brute = ((x[:, None] - codes[None]) ** 2).sum(-1).argmin(-1)
    assert torch.equal(nearest_code(x, codes), brute)


def test_rvq_stages_reduce_error_and_decode_matches():
    torch.manual_seed(0)
    x = torch.randn(600, 3)
    errors = []
    for stages in (1, 2, 4, 6):
        vq = ResidualVQ(3, n_stages=stages, n_codes=64)
        vq.fit(x)
        idx = vq.indices(x)
        assert idx.shape == (600, stages) and int(idx.max()) < 64
        errors.append(float((vq.decode(idx) - x).pow(2).mean()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.1 * errors[0]
    few = torch.randn(40, 4)  # fewer distinct vectors than codes: the first stage is exact
    vq = ResidualVQ(4, n_stages=1, n_codes=64)
    vq.fit(few)
    torch.testing.assert_close(vq.decode(vq.indices(few)), few)


def test_rvq_straight_through_gradient():
    vq = ResidualVQ(3, n_stages=2, n_codes=8)
    x = torch.randn(50, 3, requires_grad=True)
    vq.fit(x)
    vq.eval()
    q = vq(x)
    (q * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(3.0).expand(50, 3))


def _compact(n: int = 300) -> CompactGaussianScene:
    g = torch.Generator().manual_seed(0)
    plain = GaussianScene.from_points(torch.rand(n, 3, generator=g) - 0.5, torch.rand(n, 3, generator=g))
    plain.opacity_logits.data.fill_(1.0)
    return CompactGaussianScene.from_scene(plain, torch.tensor([-0.5, -0.5, -0.5, 0.5, 0.5, 0.5]),
                                           CompactConfig(hash_levels=4, hash_log2_size=10))


def test_compact_mask_straight_through_and_pruning():
    scene = _compact(10)
    scene.mask_logits.data[:3] = -10.0  # sigmoid < 0.01: masked out
    scales, opac = scene.scales(), scene.opacities()
    assert float(scales[:3].abs().max()) == 0.0 and float(opac[:3].abs().max()) == 0.0
    assert float(scales[3:].min()) > 0
    (scales.sum() + opac.sum() + scene.mask_loss()).backward()
    assert scene.mask_logits.grad is not None and float(scene.mask_logits.grad[3:].abs().min()) > 0
    assert scene.prune_mask().tolist() == [True] * 3 + [False] * 7


def test_colour_field_trains_the_grid_and_mlp_but_does_not_move_the_gaussians():
    scene = _compact(50)
    colors = scene.colors_along(torch.nn.functional.normalize(torch.randn(50, 3), dim=-1))  # fixed directions
    assert float(colors.min()) >= 0.0
    colors.sum().backward()
    assert scene.means.grad is None  # the grid is read at the detached means
    for p in list(scene.color_grid.parameters()) + list(scene.color_mlp.parameters()):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0


@pytest.mark.parametrize("compact", [False, True])
def test_colours_of_visible_gaussians_only(compact):
    """``colors(origin, visible)``: the visible rows equal the full evaluation, the others are 0 and get
    no gradient (SH degree 2 for the plain scene, so the per-degree slicing is exercised)."""
    scene = _compact(40) if compact else _tiny_sh_scene(40)
    origin = torch.tensor([0.3, -0.2, 3.0])
    visible = torch.arange(40) % 3 != 0
    full = scene.colors(origin).detach()
    part = scene.colors(origin, visible)
    torch.testing.assert_close(part[visible], full[visible])
    assert float(part[~visible].abs().max()) == 0.0
    part.sum().backward()
    grad = scene.mask_logits.grad if compact else scene.sh_dc.grad
    if not compact:
        assert float(grad[~visible].abs().max()) == 0.0 and float(grad[visible].abs().sum(dim=(1, 2)).min()) > 0
    else:
        assert grad is None  # colour does not depend on the masks
        assert scene.means.grad is not None and float(scene.means.grad[~visible].abs().max()) == 0.0


def _tiny_sh_scene(n: int) -> GaussianScene:
    g = torch.Generator().manual_seed(5)
    scene = GaussianScene(torch.rand(n, 3, generator=g) - 0.5, torch.full((n, 3), -2.0), torch.randn(n, 4, generator=g),
                          torch.zeros(n), torch.randn(n, 16, 3, generator=g) * 0.3)
    scene.active_sh_degree = 2
    return scene


def test_quantize_u8_error_is_at_most_half_a_step():
    values = torch.randn(1000) * 3
    codes, value_range = quantize_u8(values)
    assert codes.dtype == torch.uint8 and int(codes.min()) == 0 and int(codes.max()) == 255
    step = float(values.max() - values.min()) / 255
    assert float((dequantize_u8(codes, value_range) - values).abs().max()) <= step / 2 + 1e-6
    fixed, _ = quantize_u8(torch.tensor([-1.0, 0.0, 0.6, 2.0]), 0.0, 1.0)  # a fixed range clamps
    assert fixed.tolist() == [0, 0, 153, 255]


def test_compressed_file_round_trip_renders_the_same(tmp_path):
    scene = _compact()
    scene.mask_logits.data[:50] = -10.0
    renderer = SplatRenderer(background=(1.0, 1.0, 1.0))
    view = torch.eye(4)
    view[2, 3] = 2.0
    K = torch.tensor([[40.0, 0, 20], [0, 40.0, 20], [0, 0, 1]])
    scene.enable_rvq()
    scene.eval()
    with torch.no_grad():
        before = renderer.render(scene, view, K, 40, 40)["rgb"]
    size = save_compressed(scene, tmp_path / "s.ofz")
    assert size == (tmp_path / "s.ofz").stat().st_size
    back = load_compressed(tmp_path / "s.ofz")
    assert len(back) == 250
    with torch.no_grad():
        after = renderer.render(back.eval(), view, K, 40, 40)["rgb"]
    assert float((after - before).abs().mean()) < 5e-3
    bad = tmp_path / "bad.ofz"
    bad.write_bytes(b"nonsense")
    with pytest.raises(OmnifieldError, match="bad.ofz: not a compressed"):
        load_compressed(bad)
    bad.write_bytes(b"OFSPLATZ1" + b"old")
    with pytest.raises(OmnifieldError, match="an older version's compressed"):
        load_compressed(bad)


def test_compact_to_plain_scene_bakes_colour():
    scene = _compact(50)
    plain = scene.to_plain_scene()
    dirs = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    torch.testing.assert_close(plain.colors_along(dirs), scene.colors_along(dirs).detach(), atol=2e-2, rtol=0)


def test_eval_values_are_kept_until_the_scene_changes():
    """In eval mode without gradients RVQ and the colour grid run once; any edit of the scene is seen."""
    scene = _compact(50)
    scene.enable_rvq()
    scene.eval()
    with torch.no_grad():
        first, feats = scene.scales(), scene.color_parameters()
        assert scene.scales() is first and scene.color_parameters() is feats  # kept
        scene.log_scales.data += 1.0  # a .data edit, invisible to autograd's version counter
        moved = scene.scales()
        assert moved is not first and float((moved - first).abs().max()) > 0
        next(scene.color_grid.parameters()).data.mul_(0.5)
        assert scene.color_parameters() is not feats
    with torch.enable_grad():
        assert scene.scales().requires_grad  # with gradients: computed afresh
    scene.train()
    with torch.no_grad():
        assert scene.scales() is not scene.scales()
